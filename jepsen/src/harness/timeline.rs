//! `timeline.html`: one column per process, time flowing down, one box per operation
//! from invocation to completion, coloured by outcome (ok blue, info orange, fail
//! pink, never completed grey); hovering shows the operation. Faults are bands across
//! all columns. At most [`TIMELINE_OPS_MAX`] operations (the earliest) are drawn.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::recorder::EntryType;
use super::spans::{fault_colour, FaultSpan, OpSpan};

/// Operations drawn, at most (Jepsen's cap).
pub const TIMELINE_OPS_MAX: usize = 10_000;
/// The page is at most this tall; time is scaled to fit.
const HEIGHT_PX_MAX: f64 = 20_000.0;
const COLUMN_WIDTH_PX: usize = 70;
const BOX_HEIGHT_PX_MIN: f64 = 2.0;
/// Room above the first row for the column headers.
const HEADER_PX: f64 = 40.0;

fn colour(outcome: EntryType) -> &'static str {
    match outcome {
        EntryType::Ok => "#6db6ff",
        EntryType::Info => "#ffaa26",
        EntryType::Fail => "#feb5da",
        EntryType::Invoke | EntryType::Nemesis => "#cccccc",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
pub fn render(title: &str, ops: &[OpSpan], faults: &[FaultSpan]) -> String {
    let mut drawn: Vec<&OpSpan> = ops.iter().collect();
    drawn.sort_by_key(|op| op.invoke_ns);
    let truncated = drawn.len() > TIMELINE_OPS_MAX;
    drawn.truncate(TIMELINE_OPS_MAX);
    let end_ns = drawn
        .iter()
        .map(|op| op.complete_ns.unwrap_or(op.invoke_ns))
        .chain(faults.iter().map(|f| f.stop_ns))
        .max()
        .unwrap_or(0);
    let px_per_ms = (HEIGHT_PX_MAX / (end_ns as f64 / 1e6).max(1.0)).min(1.0);
    let y = |ns: u64| HEADER_PX + ns as f64 / 1e6 * px_per_ms;
    let columns: BTreeMap<u64, usize> = drawn
        .iter()
        .map(|op| op.process)
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .enumerate()
        .map(|(column, process)| (process, column))
        .collect();
    let width = columns.len().max(1) * COLUMN_WIDTH_PX;
    let mut body = String::new();
    for fault in faults {
        let top = y(fault.start_ns);
        let _ = writeln!(
            body,
            r#"<div class="fault" style="top:{top:.1}px;height:{:.1}px;width:{width}px;background:{}" title="{}"></div>"#,
            (y(fault.stop_ns) - top).max(BOX_HEIGHT_PX_MIN),
            fault_colour(&fault.family),
            escape(&format!("{} {}", fault.family, fault.description))
        );
    }
    for (process, column) in &columns {
        let _ = writeln!(
            body,
            r#"<div class="head" style="left:{}px">p{process}</div>"#,
            column * COLUMN_WIDTH_PX
        );
    }
    for op in &drawn {
        let top = y(op.invoke_ns);
        let bottom = y(op.complete_ns.unwrap_or(end_ns));
        let _ = writeln!(
            body,
            r#"<div class="op" style="left:{}px;top:{top:.1}px;height:{:.1}px;background:{}" title="{}">{}</div>"#,
            columns[&op.process] * COLUMN_WIDTH_PX,
            (bottom - top).max(BOX_HEIGHT_PX_MIN),
            colour(op.outcome),
            escape(&format!(
                "p{} at {:.3} s: {}",
                op.process,
                op.invoke_ns as f64 / 1e9,
                op.description
            )),
            escape(&op.f)
        );
    }
    page(title, truncated, ops.len(), px_per_ms, &body)
}

fn page(title: &str, truncated: bool, op_count: usize, px_per_ms: f64, body: &str) -> String {
    let note = if truncated {
        format!("showing the first {TIMELINE_OPS_MAX} of {op_count} operations; ")
    } else {
        String::new()
    };
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 11px sans-serif; }}
.ops {{ position: relative; }}
.op {{ position: absolute; width: {op_width}px; overflow: hidden; border-radius: 2px; }}
.head {{ position: absolute; top: 0; width: {op_width}px; font-weight: bold; }}
.fault {{ position: absolute; left: 0; opacity: 0.35; }}
</style></head><body>
<h1>{title}</h1>
<p>{note}{px_per_ms:.3} px per ms; ok blue, info orange, fail pink, never completed grey;
bands: kill red, pause blue, partition yellow, clock purple, loss green, member orange,
disk-full grey, power teal. Hover for details.</p>
<div class="ops">
{body}</div></body></html>
"#,
        title = escape(title),
        op_width = COLUMN_WIDTH_PX - 4,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_gets_an_escaped_box_in_its_process_column() {
        let op = |process, outcome| OpSpan {
            process,
            f: "put".to_string(),
            key: None,
            invoke_ns: 1_000_000,
            complete_ns: Some(3_000_000),
            outcome,
            description: "put <\"x\">".to_string(),
        };
        let page = render("t", &[op(1, EntryType::Ok), op(7, EntryType::Info)], &[]);
        assert_eq!(page.matches(r#"class="op""#).count(), 2);
        assert_eq!(page.matches(r#"class="head""#).count(), 2);
        assert!(page.contains("put &lt;&quot;x&quot;&gt;"));
        assert!(!page.contains("<\"x\">"));
    }
}
