from setuptools import find_packages, setup

setup(
    name="xclip_hf",
    version="0.1.0",
    description="X-CLIP (Expanding Language-Image Pretrained Models for General Video Recognition) for Hugging Face Transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["xclip_hf", "xclip_hf.*"]),
    package_data={"xclip_hf": ["training/metrics/*.py", "evaluation/labels/*.csv", "evaluation/paper_figures.json"]},
    python_requires=">=3.10",
    install_requires=[
        # install torch==2.13.0 (CPU build) first: any torch>=2.4 satisfies this pin
        "torch>=2.4",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "accelerate>=1.0",
        "evaluate>=0.4",
        "decord>=0.6",
        "av>=12",
        "safetensors",
        "tokenizers",
        "numpy",
        "pillow",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        # the tests run the web app (gradio + a real browser), the ONNX export and both CPU runtimes
        "test": ["pytest>=8", "faiss-cpu", "gradio>=6,<7", "gradio_client>=2,<3", "playwright>=1.40",
                 "onnx>=1.16", "onnxscript>=0.3", "onnxruntime>=1.18", "openvino>=2024.0", "webdataset>=0.2",
                 "fsspec[http]>=2023.1", "ray[data]>=2.40"],
        "faiss": ["faiss-cpu"],
        "app": ["gradio>=6,<7", "gradio_client>=2,<3"],  # `xclip-hf app`, xclip_hf.app
        # `embed --webdataset`, fsspec URLs (s3:// also needs s3fs), http shards (aiohttp through fsspec[http])
        "sources": ["webdataset>=0.2", "fsspec[http]>=2023.1"],
        "ray": ["ray[data]>=2.40"],  # `xclip-hf embed --engine ray` (xclip_hf.corpus.ray_engine)
        # xclip-hf export-onnx and the onnxruntime / openvino runtimes (xclip_hf.deploy)
        "onnx": ["onnx>=1.16", "onnxscript>=0.3", "onnxruntime>=1.18", "openvino>=2024.0"],
    },
    entry_points={"console_scripts": ["xclip-hf=xclip_hf.cli:main"]},
)
