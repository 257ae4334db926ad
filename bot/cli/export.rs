//! `carebot export` and `carebot report`: rows streamed as the store reads them (CSV or JSON
//! lines), with text a spreadsheet would run as a formula made safe.

use anyhow::bail;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Cli, Command, ExportCommand, Format, ReportBy, ReportCommand, ReportFormat};
use crate::store::{AnyStore, Store};

/// `export` and `report`: they write to `out`, stdout from the command line (tests pass a
/// buffer, to read exactly what an operator would).
pub async fn results(cli: &Cli, out: &mut (dyn std::io::Write + Send)) -> anyhow::Result<()> {
    let config = cli.config()?;
    let store = cli.store(&config).await?;
    match &cli.command {
        Command::Export(cmd) => export(&store, cmd, out).await?,
        Command::Report(ReportCommand::Pulse {
            by,
            weeks,
            flow,
            score,
            until,
            format,
        }) => {
            let options = crate::report::PulseOptions {
                flow: flow.clone(),
                key: score.clone(),
                by: by.map(|b| match b {
                    ReportBy::Branch => crate::report::GroupBy::Branch,
                    ReportBy::State => crate::report::GroupBy::State,
                }),
                weeks: *weeks,
                now: until.map_or_else(Utc::now, |d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
            };
            let windows = &config.runner.escalation;
            let report = crate::report::pulse(&store, &options, windows).await?;
            match format {
                ReportFormat::Table => write!(out, "{}", report.to_table(windows))?,
                ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
            }
        }
        _ => bail!("not an export or a report"),
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Streams an export to stdout: each row is written as the store reads it, so a million rows
/// take no more memory than one.
async fn export(
    store: &AnyStore,
    cmd: &ExportCommand,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let mut out = Rows::new(
        matches!(
            cmd,
            ExportCommand::Answers {
                format: Format::Csv,
                ..
            } | ExportCommand::Escalations {
                format: Format::Csv,
                ..
            }
        ),
        out,
    );
    let t = |d: &Option<DateTime<Utc>>| d.map(|d| d.to_rfc3339()).unwrap_or_default();
    let result = match cmd {
        ExportCommand::Answers {
            flow,
            since,
            format,
        } => {
            let format = *format;
            if matches!(format, Format::Csv) {
                out.write_header(&["caregiver", "flow", "step", "answer", "answered_at"])?;
            }
            let mut sink = |r: crate::model::AnswerRow| -> std::io::Result<()> {
                match format {
                    Format::Csv => {
                        // A number the engine read (a score) is data; anything else is what
                        // the caregiver wrote, or JSON of it.
                        let answer = match &r.answer {
                            Value::String(s) => Cell::Text(s.clone()),
                            Value::Number(n) => Cell::Data(n.to_string()),
                            other => Cell::Text(other.to_string()),
                        };
                        out.write_record([
                            Cell::Text(r.caregiver),
                            Cell::Text(r.flow),
                            Cell::Text(r.step),
                            answer,
                            Cell::Data(r.answered_at.to_rfc3339()),
                        ])?;
                    }
                    Format::Jsonl => {
                        let line = serde_json::json!({"caregiver": r.caregiver, "flow": r.flow, "step": r.step, "answer": r.answer, "answered_at": r.answered_at});
                        out.line(&line)?;
                    }
                }
                Ok(())
            };
            store
                .export_answers(flow.as_deref(), *since, &mut sink)
                .await
        }
        ExportCommand::Escalations {
            flow,
            since,
            format,
        } => {
            let format = *format;
            if matches!(format, Format::Csv) {
                out.write_header(&[
                    "id",
                    "caregiver",
                    "supervisor",
                    "priority",
                    "reason",
                    "status",
                    "raised_at",
                    "acknowledged_at",
                    "closed_at",
                ])?;
            }
            let mut sink = |r: crate::model::EscalationRow| -> std::io::Result<()> {
                match format {
                    Format::Csv => out.write_record([
                        Cell::Data(r.id.to_string()),
                        Cell::Text(r.caregiver.clone()),
                        Cell::Text(r.supervisor.clone().unwrap_or_default()),
                        Cell::Text(r.priority.clone()),
                        Cell::Text(r.reason.clone()),
                        Cell::Text(r.status.clone()),
                        Cell::Data(r.raised_at.to_rfc3339()),
                        Cell::Data(t(&r.acknowledged_at)),
                        Cell::Data(t(&r.closed_at)),
                    ])?,
                    Format::Jsonl => {
                        let line = serde_json::json!({
                            "id": r.id, "caregiver": r.caregiver, "supervisor": r.supervisor,
                            "priority": r.priority, "reason": r.reason, "status": r.status,
                            "raised_at": r.raised_at, "acknowledged_at": r.acknowledged_at, "closed_at": r.closed_at,
                        });
                        out.line(&line)?;
                    }
                }
                Ok(())
            };
            store
                .export_escalations(flow.as_deref(), *since, &mut sink)
                .await
        }
    };
    match result.map(|_| ()).and_then(|()| Ok(out.flush()?)) {
        // `carebot export … | head` closes the pipe early: that is the reader's choice.
        Err(crate::store::StoreError::Sink(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        other => Ok(other?),
    }
}

/// One CSV cell of an export. `Text` is anything people wrote or named: an answer, an external
/// id from the roster, a flow's ids and reasons. `Data` is what carebot formats itself: ids,
/// times, and the numbers the engine read, where a minus sign is a negative number, not a
/// formula.
enum Cell {
    Text(String),
    Data(String),
}

impl Cell {
    fn into_csv(self) -> String {
        match self {
            Cell::Text(text) => spreadsheet_safe(text),
            Cell::Data(data) => data,
        }
    }
}

/// Text that a spreadsheet would take for a formula (it begins with `=`, `+`, `-`, `@`, a tab
/// or a carriage return; OWASP "CSV injection") gets a leading `'`, so that
/// `=HYPERLINK("http://evil","x")` typed by anyone shows as text instead of running when staff
/// open an export in Excel or Sheets. JSON lines, read by programs, keep the text as it is.
fn spreadsheet_safe(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

/// An export's output: CSV records (text cells made safe for spreadsheets, see [`Cell`]), or
/// JSON lines.
enum Rows<W: std::io::Write> {
    Csv(Box<csv::Writer<W>>),
    Lines(W),
}

impl<W: std::io::Write> Rows<W> {
    fn new(csv: bool, w: W) -> Self {
        if csv {
            Rows::Csv(Box::new(csv::Writer::from_writer(w)))
        } else {
            Rows::Lines(w)
        }
    }

    /// The header row: carebot's own column names.
    fn write_header(&mut self, names: &[&str]) -> std::io::Result<()> {
        self.write_record(names.iter().map(|n| Cell::Data((*n).to_owned())))
    }

    fn write_record(&mut self, record: impl IntoIterator<Item = Cell>) -> std::io::Result<()> {
        match self {
            // Keep the I/O error's kind: a closed pipe is the reader's choice, not a failure.
            Rows::Csv(w) => w
                .write_record(record.into_iter().map(Cell::into_csv))
                .map_err(|e| match e.into_kind() {
                    csv::ErrorKind::Io(e) => e,
                    other => std::io::Error::other(format!("{other:?}")),
                }),
            Rows::Lines(_) => Ok(()),
        }
    }

    fn line(&mut self, value: &Value) -> std::io::Result<()> {
        match self {
            Rows::Lines(w) => writeln!(w, "{value}"),
            Rows::Csv(_) => Ok(()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Rows::Csv(w) => w.flush(),
            Rows::Lines(w) => w.flush(),
        }
    }
}

/// Plays a caregiver in the terminal against the real engine, templates and a temporary store.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote() {
        for risky in [
            "=HYPERLINK(\"http://evil\",\"x\")",
            "+1 call me",
            "-2+3",
            "@SUM(A1:A9)",
            "\t=1+1",
            "\r=1+1",
        ] {
            assert_eq!(
                Cell::Text(risky.into()).into_csv(),
                format!("'{risky}"),
                "{risky:?}"
            );
        }
        for plain in ["More hours please", "1 = very hard", "", "C1", "'quoted"] {
            assert_eq!(Cell::Text(plain.into()).into_csv(), plain);
        }
    }

    #[test]
    fn data_carebot_formats_itself_is_written_as_is() {
        assert_eq!(Cell::Data("-3".into()).into_csv(), "-3");
        assert_eq!(
            Cell::Data("2026-11-17T16:00:00+00:00".into()).into_csv(),
            "2026-11-17T16:00:00+00:00"
        );
    }
}
