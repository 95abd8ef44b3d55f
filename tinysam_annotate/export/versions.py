"""Version and file names of exported ONNX folders (torch-free, shared by exporter and runtime)."""

# Bump when the exported graphs change: cached exports with another version are rebuilt.
# 4: cross-attentions fold the image-side projections into the prompt tokens (faster clicks and batches).
# 5: the decoder stops before the masks; masks.onnx upscales the prompts a caller keeps (everything mode
#    upscales only those whose predicted IoU passes its threshold).
# 6: the first decoder layer projects the image shared by all prompts once instead of folding it into each prompt
#    (everything mode's 64-prompt batches), and the image->token output projection folds into the token values.
# 7: masks.onnx upscales any top-left block of feature rows x columns (everything mode skips the frame's padding).
# 8: the decoder takes any top-left block of the embedding and attends to it alone (everything mode leaves out the
#    padding of a non-square image: 51 of 64 feature rows on a 4:3 image).
EXPORT_VERSION = "8"
MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
MASKS_FILE = "masks.onnx"
# Opset 20 has a native Gelu op: one fused kernel in ORT, and the INT8 graph keeps it in one piece.
DEFAULT_OPSET = 20
