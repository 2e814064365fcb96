"""Regenerate the README's screenshots of the web app (docs/app_classify.png, docs/app_search.png) with the browser
tests' own code (tests/_helpers_app.py): the app on 127.0.0.1, Debian's chromium driven by Playwright.

    # the demo's trained X-CLIP (python examples/demo.py) on an untrimmed video of its classes
    python docs/app_screenshots.py --model demo_output/xclip
    # without a trained model: a tiny random model (the layout, not the accuracy)
    python docs/app_screenshots.py

Needs `pip install -e ".[test]"` and chromium. The untrimmed video is the demo's kind (segments of 3 s of the
demo's classes, `xclip_hf.data.synthetic.write_long_video`); the index holds 2 s windows of it and of a second
one, with their video contexts (search scores are then the pipeline's logits).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEMO_CLASSES = ["moving left", "moving right", "growing", "shrinking", "appearing", "disappearing"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model folder (default: a tiny random model written here)")
    parser.add_argument("--query", default="growing", help="the search tab's query")
    parser.add_argument("--output-dir", default=HERE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np

    from _helpers_app import Browser, classify_in_page, search_in_page, serve
    from xclip_hf import embed_videos
    from xclip_hf.app import build_app
    from xclip_hf.data.synthetic import write_long_video

    work = tempfile.mkdtemp(prefix="xclip_app_docs_")
    model = args.model
    if model is None:
        from _helpers_pipeline import make_our_checkpoint

        model = make_our_checkpoint(os.path.join(work, "tiny"))
    order = [str(c) for c in np.random.default_rng(args.seed).permutation(DEMO_CLASSES)]
    long = os.path.join(work, "untrimmed.mp4")
    write_long_video(long, order + order[:2], segment_s=3.0, fps=12, size=32, seed=args.seed + 1)
    other = os.path.join(work, "another.mp4")
    write_long_video(other, order[::-1], segment_s=3.0, fps=12, size=32, seed=args.seed + 2)
    index = os.path.join(work, "index")
    embed_videos([long, other], index, model, chunk_length_s=2.0, save_context=True, progress=False)

    app = build_app(model, index)
    url = serve(app)
    browser = Browser()
    try:
        page = browser.page(url)
        page.locator("#video-in input[type=file]").wait_for(state="attached")
        page.get_by_text("Long videos: windows and timeline").click()  # open the window settings
        page.get_by_label("Window length (s)").fill("2")
        page.get_by_label("Hop (s)").fill("0.5")
        classify_in_page(page, long, DEMO_CLASSES, screenshot=os.path.join(args.output_dir, "app_classify.png"))
        search_in_page(browser.page(url), args.query, screenshot=os.path.join(args.output_dir, "app_search.png"))
        assert not browser.foreign_requests(), browser.foreign_requests()
    finally:
        browser.close()
        app.close()
        app.xclip_service.close()
        shutil.rmtree(work, ignore_errors=True)
    from PIL import Image

    for name in ("app_classify.png", "app_search.png"):  # 256 colours: a third of the bytes, same look
        path = os.path.join(args.output_dir, name)
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    print(f"wrote {args.output_dir}/app_classify.png and app_search.png")


if __name__ == "__main__":
    main()
