"""Export of the trained networks to TorchScript and ONNX, and the Triton model repository."""

from recoserve.extras import require

require("serve", "exporting models (recoserve.export)")
