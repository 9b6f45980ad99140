"""`workbench bench embed-text` and `embed-media`: encoder throughput, end to end (the benchmark is
`workbench.bench.embed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.bench.embed import TEXT_VARIANTS
from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say


def register(app: typer.Typer) -> None:
    app.command("embed-text")(embed_text)
    app.command("embed-media")(embed_media)


def embed_text(
    data: Annotated[Path, typer.Option(help="CSV with a text column.")] = Path(
        "../shared/data/davidson/labeled_data.csv"
    ),
    text_column: Annotated[str, typer.Option(help="Text column.")] = "tweet",
    limit: Annotated[int, typer.Option(help="Texts to embed (the first N rows).", min=1)] = 3000,
    variants: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {', '.join(TEXT_VARIANTS)}.")
    ] = "fp32,onnx-fp32,onnx-int8-mixed,onnx-int8-block",
    threads: Annotated[int, typer.Option(help="torch threads (0 = library default).", min=0)] = 0,
    through_embed: Annotated[
        bool,
        typer.Option(
            "--through-embed/--no-through-embed",
            help="Also time the same texts through `workbench embed` (default encoder).",
        ),
    ] = True,
    json_mode: JsonFlag = False,
) -> None:
    """Text throughput per variant (load included) and its cosine to fp32 on the same texts."""
    from workbench.bench.embed import embed_text_benchmark

    with handled(json_mode):
        result = embed_text_benchmark(
            data,
            text_column,
            limit=limit,
            variants=[v.strip() for v in variants.split(",") if v.strip()],
            threads=threads or None,
            through_embed=through_embed,
            progress=say,
        )
        path = write_result("embed-text", result)
        say(f"wrote {path}")

        def human() -> None:
            print(f"{'variant':<18}{'texts/s':>9}{'load s':>8}{'mean cos':>10}{'min cos':>9}")
            for name, row in result["variants"].items():
                print(
                    f"{name:<18}{row['texts_per_s']:>9}{row['load_s']:>8}"
                    f"{row['mean_cos_to_fp32']:>10}{row['min_cos_to_fp32']:>9}"
                )

        emit(result, json_mode, human)


def embed_media(
    count: Annotated[int, typer.Option(help="Items per modality.", min=1)] = 20,
    seconds: Annotated[
        float, typer.Option(help="Length of each audio/video clip.", min=0.1)
    ] = 10.0,
    json_mode: JsonFlag = False,
) -> None:
    """Throughput of the offline image, audio and video defaults on generated media."""
    from workbench.bench.embed import run_media_benchmark

    with handled(json_mode):
        result = run_media_benchmark(count, seconds, progress=say)
        path = write_result("embed-media", result)
        say(f"wrote {path}")
        emit(result, json_mode, lambda: print(result))
