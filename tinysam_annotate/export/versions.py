"""Version and file names of exported ONNX folders (torch-free, shared by exporter and runtime)."""

# Bump when the exported graphs change: cached exports with another version are rebuilt.
EXPORT_VERSION = "1"
MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
DEFAULT_OPSET = 17
