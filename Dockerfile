# bertqa on an NVIDIA GPU: the CUDA engine (plugins, cuBLASLt, C++ runtime) and the Python front-ends.
#   docker build -t bertqa .
#   docker run --gpus all --rm bertqa                                   # the sample question
#   docker run --gpus all --rm -v $PWD/engines:/engines bertqa python3 builder.py --hf /engines/model -o /engines/bert.engine --fp16
FROM nvidia/cuda:13.0.1-devel-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-dev python3-venv cmake make g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/bertqa
COPY requirements.txt .
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt
ENV PATH=/opt/venv/bin:$PATH

COPY . .
# The devel image's toolkit has cuBLASLt; build for the common data-centre and workstation GPUs.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE=/opt/venv/bin/python \
          -DBERTQA_REQUIRE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="80;86;89;90" \
 && cmake --build build -j"$(nproc)"

CMD ["python3", "inference.py", "-pf", "scripts/sample_passage.txt", "-q", "What is TensorRT?"]
