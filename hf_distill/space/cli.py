"""`hf-distill space`: the arguments of `create_space` on the command line (the CLI module registers this parser)."""

from __future__ import annotations

import argparse

from .create import HARDWARE, create_space


def add_space_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `space` subcommand to an `argparse` subparsers object; its handler is `run_space`."""
    parser = subparsers.add_parser(
        "space",
        help="Write (and push) a Gradio Space comparing the student with its teacher.",
        description="Write a Gradio Space folder comparing a distilled student with its teacher; --push uploads it.",
    )
    parser.add_argument("student", help="Hub id or local folder of the student.")
    parser.add_argument("--teacher", help="Hub id or local folder of the teacher (omit to show the student alone).")
    parser.add_argument("--space-id", help="`namespace/name` of the Space (needed with --push).")
    parser.add_argument("--output-dir", required=True, help="Folder to write the Space into.")
    parser.add_argument("--hardware", default="cpu-basic", help=f"Space hardware, one of: {', '.join(HARDWARE)}.")
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=None, help="A private Space.")
    visibility.add_argument("--public", dest="private", action="store_false", help="A public Space.")
    parser.add_argument("--push", action="store_true", help="Create the Space and upload the folder in one commit.")
    parser.add_argument("--token", help="Hub token (default: the saved login or HF_TOKEN).")
    parser.add_argument("--title", help="Space title (default: '<student> vs <teacher>').")
    parser.add_argument("--license", help="Licence id of the Space (default: the student card's).")
    parser.add_argument(
        "--benchmark", help="Benchmark report (.json or .md) to show (default: found beside the card)."
    )
    parser.add_argument("--max-new-tokens", type=int, help="Default new tokens in the app (default: 64 CPU, 256 GPU).")
    parser.set_defaults(handler=run_space)
    return parser


def run_space(args: argparse.Namespace) -> int:
    """Runs `create_space` with the parsed arguments and prints where the Space is."""
    result = create_space(
        args.student,
        teacher=args.teacher,
        space_id=args.space_id,
        output_dir=args.output_dir,
        hardware=args.hardware,
        private=args.private,
        push=args.push,
        token=args.token,
        title=args.title,
        license=args.license,
        benchmark=args.benchmark,
        max_new_tokens=args.max_new_tokens,
    )
    print(f"Space folder: {result.folder} ({', '.join(result.files)})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.pushed:
        print(f"Space: {result.space_url} (commit {result.commit_oid})")
    else:
        print(f"Try it locally: cd {result.folder} && python app.py")
    return 0
