//! What the CLI prints on stdout: answers as JSON or as a table (`--output`), and a closed
//! pipe (`wasmhook … | head -1`) treated as the reader having had enough, not as a crash.

use std::io::{self, IsTerminal as _, Write as _};

use comfy_table::{Cell, Table};
use serde_json::Value;

/// How an answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A table for people: one row per item, or one row per field of a single item.
    #[default]
    Table,
    /// The engine's JSON answer, pretty-printed, for scripts (`jq`).
    Json,
}

/// Which fields of a list's items make the table's columns (the JSON keys, in order).
/// Fields left out are still in `--output json`.
#[derive(Debug, Clone, Copy)]
pub struct Columns(pub &'static [&'static str]);

/// Writes one line to stdout. A closed pipe comes back as an `io::Error` of kind
/// `BrokenPipe`, which `main` turns into a quiet, successful exit.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, $($arg)*).and_then(|()| stdout.flush())
    }};
}
pub(crate) use outln;

/// Writes bytes to stdout as they are (completions, man pages).
pub fn raw(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Whether `error` comes from writing into a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Prints an engine answer in `format`. A table shows the items of a list answer
/// (`{"data": [...]}`) under `columns`, and any other object as one field per row.
pub fn print(value: &Value, format: Format, columns: Columns) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)?,
        Format::Table => render(value, columns),
    };
    outln!("{text}")?;
    Ok(())
}

/// The table text of an answer.
pub fn render(value: &Value, columns: Columns) -> String {
    match value.get("data").and_then(Value::as_array) {
        Some(items) => {
            let mut text = list_table(items, columns).to_string();
            if let Some(next) = value.get("next_before").and_then(Value::as_str) {
                text.push_str(&format!("\n(more: --before {next})"));
            }
            text
        }
        None => fields_table(value).to_string(),
    }
}

fn plain_table() -> Table {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table
}

fn list_table(items: &[Value], columns: Columns) -> Table {
    let mut table = plain_table();
    table.set_header(columns.0.iter().map(|c| Cell::new(c.to_uppercase())));
    for item in items {
        table.add_row(columns.0.iter().map(|c| Cell::new(cell(item.get(*c)))));
    }
    table
}

fn fields_table(value: &Value) -> Table {
    let mut table = plain_table();
    match value.as_object() {
        Some(object) => {
            for (key, field) in object {
                table.add_row([Cell::new(key), Cell::new(cell(Some(field)))]);
            }
        }
        None => {
            table.add_row([Cell::new(cell(Some(value)))]);
        }
    }
    table
}

/// One value as table text: strings bare, nothing as `-`, lists joined by commas, objects
/// as compact JSON.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_object()) => items
            .iter()
            .map(|i| cell(Some(i)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Whether the standard error stream is a terminal (progress bars, colours).
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COLS: Columns = Columns(&["id", "status", "events"]);

    #[test]
    fn a_list_becomes_one_row_per_item_under_the_columns() {
        let answer = json!({"data": [
            {"id": "a", "status": "pending", "events": ["x.*", "y"], "extra": 1},
            {"id": "b", "status": null}
        ], "next_before": "msg_9"});
        let text = render(&answer, COLS);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(lines[0].contains("STATUS") && lines[0].contains("EVENTS"));
        assert!(
            lines[1].starts_with('a') && lines[1].contains("x.*,y"),
            "{text}"
        );
        assert!(
            lines[2].starts_with('b') && lines[2].contains('-'),
            "{text}"
        );
        assert!(!text.contains("extra"));
        assert_eq!(lines.last(), Some(&"(more: --before msg_9)"));
    }

    #[test]
    fn an_object_becomes_one_row_per_field() {
        let text = render(
            &json!({"id": "evt_1", "deliveries": 2, "nested": {"a": 1}}),
            COLS,
        );
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let row = |key: &str| lines.iter().find(|l| l.starts_with(key)).copied();
        assert!(row("id").is_some_and(|l| l.ends_with("evt_1")), "{text}");
        assert!(
            row("deliveries").is_some_and(|l| l.ends_with('2')),
            "{text}"
        );
        assert!(
            row("nested").is_some_and(|l| l.ends_with("{\"a\":1}")),
            "{text}"
        );
    }

    #[test]
    fn only_a_closed_pipe_counts_as_one() {
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("x");
        assert!(is_broken_pipe(&pipe));
        assert!(!is_broken_pipe(&anyhow::anyhow!("broken pipe")));
    }
}
