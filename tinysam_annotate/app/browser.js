// tinysam-annotate in the browser: keyboard shortcuts, and no click lost while the canvas reloads.
//
// Gradio maps a click on an image through the image's natural size; while a new canvas PNG loads that size is 0 and
// Gradio drops the click. A click made then is held and replayed, at the same screen position, once the canvas has
// loaded; later clicks and shortcut keys wait behind it so that everything reaches the server in the order made.
(() => {
  let held = 0; // clicks waiting for the canvas to load
  let chain = Promise.resolve();

  const canvasImage = () => document.querySelector('#canvas img');
  const loaded = (img) => img && img.complete && img.naturalWidth > 0;
  const canvasLoaded = () => new Promise((resolve) => {
    const started = performance.now();
    const poll = () => (loaded(canvasImage()) || performance.now() - started > 10000 ? resolve() : requestAnimationFrame(poll));
    poll();
  });
  const inOrder = (action) => { if (held > 0) { chain = chain.then(action); } else { action(); } };

  document.addEventListener('click', (e) => {
    const img = e.target;
    if (!e.isTrusted || !(img instanceof HTMLImageElement) || !img.closest('#canvas')) return;
    if (held === 0 && loaded(img)) return; // Gradio maps it now
    e.stopPropagation();
    e.preventDefault();
    const { clientX, clientY } = e;
    held += 1;
    chain = chain.then(canvasLoaded).then(() => {
      held -= 1;
      const target = canvasImage();
      if (target) target.dispatchEvent(new MouseEvent('click', { clientX, clientY, bubbles: true, cancelable: true }));
    });
  }, true);

  const typing = (el) => {
    if (!el) return false;
    if (el.isContentEditable || ['TEXTAREA', 'SELECT'].includes(el.tagName)) return true;
    return el.tagName === 'INPUT' && !['radio', 'checkbox', 'button', 'submit'].includes(el.type);
  };

  document.addEventListener('keydown', (e) => {
    if (typing(document.activeElement)) return;
    const press = (id) => { const el = document.querySelector('#' + id); if (el) { e.preventDefault(); inOrder(() => el.click()); } };
    const choose = (group, value) => {
      const el = document.querySelector('#' + group + ' input[value="' + value + '"]');
      if (el) { e.preventDefault(); inOrder(() => el.click()); }
    };
    const zoomBy = (step) => {
      e.preventDefault();
      inOrder(() => {
        const inputs = [...document.querySelectorAll('#zoom input')];
        const at = inputs.findIndex((el) => el.checked);
        const next = inputs[Math.min(Math.max(at + step, 0), inputs.length - 1)];
        if (next && next !== inputs[at]) next.click();
      });
    };
    const key = e.key;
    if ((e.ctrlKey || e.metaKey) && key.toLowerCase() === 'z') return e.shiftKey ? press('btn-redo') : press('btn-undo');
    if ((e.ctrlKey || e.metaKey) && key.toLowerCase() === 'y') return press('btn-redo');
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const actions = {
      a: () => press('btn-accept'), c: () => press('btn-cycle'), Escape: () => press('btn-clear'),
      p: () => choose('mode', 'positive'), n: () => choose('mode', 'negative'), b: () => choose('mode', 'box'),
      '+': () => zoomBy(1), '=': () => zoomBy(1), '-': () => zoomBy(-1),
      ArrowLeft: () => press('btn-pan-left'), ArrowRight: () => press('btn-pan-right'),
      ArrowUp: () => press('btn-pan-up'), ArrowDown: () => press('btn-pan-down'),
    };
    (actions[key] || (() => {}))();
  });
})();
