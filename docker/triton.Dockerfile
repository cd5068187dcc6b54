# Triton (NGC, GPU) with recoserve installed for the Python-backend models (condensation,
# mlpf_decode, hgcal_clustering, event_reco). The networks run on Triton's onnxruntime backend;
# the model repository ("ngc" flavour) is mounted at /models.
# 24.10 is Triton 2.51.0, the version of the embedded CPU server and of tritonclient.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

WORKDIR /opt/recoserve
COPY pyproject.toml README.md ./
COPY recoserve ./recoserve
# Only what the Python-backend models import (numpy, scipy, onnxruntime); not torch.
RUN pip install --no-cache-dir "numpy<2" scipy onnxruntime \
 && pip install --no-cache-dir --no-deps .

EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD curl -fsS http://localhost:8000/v2/health/ready || exit 1
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/models", "--strict-readiness=true", "--allow-metrics=true", \
     "--allow-gpu-metrics=true", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"]
