"""Feedback categories: macro-F1 of keyword rules vs sentence embeddings vs both, on held-out labelled texts.

The labelled set (guanaco_dagster/feedback/data/labelled_feedback.jsonl, hand-written beta-user feedback with
typos, sarcasm, non-English and multi-category texts) has a fixed split: the embedding classifier trains on
the "train" texts only and every method is scored on the "test" texts. Macro-F1 averages the per-category F1
over the categories the held-out texts contain (a text's categories are a set; "other" = none applies).
Timing: seconds to load the model and train, then `--samples` passes of categorising every held-out text
(min/median per text), per method.

    python -m benchmarks.bench_feedback_categories [--samples N]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from benchmarks.common import (
    console,
    fmt,
    machine_info,
    machine_line,
    parser,
    print_table,
    rounded,
    timed,
    write_results,
)
from guanaco_dagster.feedback.categories import (
    DEFAULT_CATEGORY_METHOD,
    CategoryMethod,
    LabelledFeedback,
    categorise,
    category_f1,
    load_labelled_feedback,
    macro_f1,
)
from guanaco_dagster.feedback.category_classifier import EmbeddingCategoriser
from guanaco_dagster.feedback.feedback_rules import FEEDBACK_CATEGORIES

NAME = "feedback_categories"
METHODS: tuple[CategoryMethod, ...] = ("rules", "embeddings", "both")
DEFAULT_SAMPLES = 3


def evaluate(
    held_out: Sequence[LabelledFeedback], classifier: EmbeddingCategoriser
) -> dict[CategoryMethod, list[list[str]]]:
    """Each method's categories for the held-out texts."""
    texts = [example.text for example in held_out]
    return {method: categorise(texts, method, classifier) for method in METHODS}


def time_methods(
    texts: Sequence[str], classifier: EmbeddingCategoriser, samples: int
) -> dict[CategoryMethod, list[float]]:
    """Seconds per text of each method, one sample per pass over `texts`."""
    seconds: dict[CategoryMethod, list[float]] = {method: [] for method in METHODS}
    for _ in range(samples):
        for method in METHODS:
            seconds[method].append(timed(lambda m=method: categorise(texts, m, classifier))[1] / len(texts))
    return seconds


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="timing passes (at least 3)")
    args = arguments.parse_args()
    samples = max(3, args.samples)
    machine = machine_info()
    console.rule("[bold]Benchmark: feedback categories")
    console.print(f"[dim]{machine_line(machine)}[/]")
    started = time.perf_counter()
    labelled = load_labelled_feedback()
    training = [example for example in labelled if not example.held_out]
    held_out = [example for example in labelled if example.held_out]
    cpu_started = time.process_time()
    classifier, train_s = timed(
        lambda: EmbeddingCategoriser.train((example.text, example.categories) for example in training)
    )
    # CPU seconds too: on a shared machine the wall time says more about the neighbours than about us.
    train_cpu_s = time.process_time() - cpu_started
    predictions = evaluate(held_out, classifier)
    truth = [example.categories for example in held_out]
    per_category = {method: category_f1(truth, predicted) for method, predicted in predictions.items()}
    macro = {method: macro_f1(truth, predicted) for method, predicted in predictions.items()}
    seconds_per_text = time_methods([example.text for example in held_out], classifier, samples)
    best = max(METHODS, key=lambda method: macro[method])

    print_table(
        f"Macro-F1 on {len(held_out)} held-out texts (classifier trained on {len(training)})",
        ["method", "macro-F1", "min s/text", "median s/text"],
        [
            [
                method + (" (default)" if method == DEFAULT_CATEGORY_METHOD else ""),
                fmt(macro[method], 3),
                fmt(min(seconds_per_text[method]), 5),
                fmt(statistics.median(seconds_per_text[method]), 5),
            ]
            for method in METHODS
        ],
        caption=f"first use (imports, model load, training): {train_s:.1f} s wall, {train_cpu_s:.1f} s CPU; "
        f"timing: {samples} passes over the held-out texts",
    )
    categories = [c for c in FEEDBACK_CATEGORIES if c in per_category["rules"]]
    held_out_count = {c: sum(c in t for t in truth) for c in categories}
    print_table(
        "F1 per category (held-out texts)",
        ["category", "held-out texts", *METHODS],
        [
            [category, held_out_count[category], *(fmt(per_category[m][category], 2) for m in METHODS)]
            for category in categories
        ],
    )
    if best != DEFAULT_CATEGORY_METHOD:
        console.print(f"[yellow]best method here is {best}, the default is {DEFAULT_CATEGORY_METHOD}[/]")
    write_results(
        NAME,
        {
            "labelled_texts": len(labelled),
            "training_texts": len(training),
            "held_out_texts": len(held_out),
            "samples": samples,
            "default_method": DEFAULT_CATEGORY_METHOD,
        },
        rounded(
            {
                "macro_f1_rules": macro["rules"],
                "macro_f1_embeddings": macro["embeddings"],
                "macro_f1_both": macro["both"],
                "best_method": best,
                "f1_per_category": per_category,
                "train_s": train_s,
                "train_cpu_s": train_cpu_s,
                "seconds_per_text": {
                    method: {
                        "min": min(values),
                        "median": statistics.median(values),
                        "samples": values,
                    }
                    for method, values in seconds_per_text.items()
                },
            },
            6,
        ),
        machine,
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    main()
