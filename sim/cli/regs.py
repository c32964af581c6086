"""``fp8accel regs``: the register map of :mod:`fp8accel.hw.regs` as a C header, JSON, the
tables of docs/host-interface.md, or a short map on standard output."""

import json
import sys

from fp8accel.hw import regs

__all__ = ["add_regs_parser", "run_regs_cli", "write_c_header"]


def add_regs_parser(sub):
    p = sub.add_parser(
        "regs", help="the register map: a C header, JSON or the docs' tables",
        description="Print the accelerator's register map (hw.regs), or write it for firmware "
                    "as a C header (addresses, field shifts and masks, CTRL bits, error codes, "
                    "output formats, version) and as JSON.")
    p.add_argument("--c-header", default=None, metavar="OUT.h",
                   help="write the C header here")
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="write the description as JSON here")
    p.add_argument("--markdown", action="store_true",
                   help="print the tables of docs/host-interface.md, between their markers")
    p.add_argument("--write-doc", default=None, metavar="FILE.md",
                   help="replace the tables between the markers of FILE.md (docs/"
                        "host-interface.md) with the rendering, keeping its prose")
    p.set_defaults(func=run_regs_cli)


def write_c_header(path, generator="fp8accel regs --c-header"):
    """Write :func:`hw.regs.c_header` to ``path`` (atomically)."""
    from fp8accel.sim.files import write_text
    write_text(path, regs.c_header(generator))


def run_regs_cli(args):
    from fp8accel.sim.cli.util import CliError, check_distinct_outputs, check_output_file
    from fp8accel.sim.files import write_text

    if args.c_header is not None:
        check_output_file(args.c_header, "--c-header", (".h",))
    if args.json is not None:
        check_output_file(args.json, "--json", (".json",))
    doc = None
    if args.write_doc is not None:
        check_output_file(args.write_doc, "--write-doc", (".md",))
        try:
            with open(args.write_doc) as f:
                doc = regs.replace_sections(f.read())
        except OSError as exc:
            raise CliError(f"cannot read {args.write_doc}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CliError(f"{args.write_doc}: {exc}") from None
    check_distinct_outputs({"--c-header": args.c_header, "--json": args.json,
                            "--write-doc": args.write_doc})

    if args.c_header is not None:
        write_c_header(args.c_header)
    if args.json is not None:
        write_text(args.json, json.dumps(regs.to_json(), indent=1) + "\n")
    if doc is not None:
        write_text(args.write_doc, doc)
    if args.markdown:
        sys.stdout.write(regs.markdown())
    wrote = [p for p in (args.c_header, args.json, args.write_doc) if p is not None]
    if wrote:
        print(f"Wrote {', '.join(wrote)} (register map version {regs.REGMAP_VERSION})",
              file=sys.stderr)
    elif not args.markdown:
        sys.stdout.write(regs.text_map())
    return 0
