#!/usr/bin/env python
"""Fine-tune X-CLIP for video classification with the Trainer: `xclip_hf.training.run_video_classification` as a
script (the options, the paper's defaults and the data formats are described there).

    python examples/run_video_classification.py --model_name_or_path CKPT --train_file train.txt \\
        --validation_file val.txt --labels_file labels.csv --video_root videos/ --output_dir out \\
        --do_train --do_eval --per_device_train_batch_size 8 --num_train_epochs 30

is the same as `python -m xclip_hf.training.run_video_classification ...`; it runs unchanged under `torchrun` and
`accelerate launch`.
"""

from xclip_hf.training.run_video_classification import *  # noqa: F401,F403  (its argument classes and steps)
from xclip_hf.training.run_video_classification import main

if __name__ == "__main__":
    main()
