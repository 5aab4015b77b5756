"""Parses a /metrics body with the Python Prometheus client, as a scraper would.

Usage: parse.py BODY OUT. The body must parse with both of prometheus_client's
parsers: the OpenMetrics one (strict: `# EOF`, units in names, counters with
`_total`), which is the format cairn serves, and the older Prometheus text one.
Writes the OpenMetrics parser's view to OUT as one JSON object:
{"families": {name: type}, "samples": [[name, {label: value}, value], ...]}.
Exits non-zero (with the parser's error) when either parser refuses the body.
"""

import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as body:
        text = body.read()
    families = list(openmetrics_families(text))
    # The older parser stops at nothing it does not know; it must not raise.
    older = list(text_families(text))
    if not older:
        raise SystemExit("the Prometheus text parser found no metric family")
    out = {"families": {}, "samples": []}
    for family in families:
        out["families"][family.name] = family.type
        for sample in family.samples:
            out["samples"].append([sample.name, dict(sample.labels), sample.value])
    with open(sys.argv[2], "w", encoding="utf-8") as parsed:
        json.dump(out, parsed)


if __name__ == "__main__":
    main()
