//! `carebot import caregivers|supervisors|training`: a CSV read row by row, each bad row
//! reported by its line and the good ones kept; the exit code says whether any was refused.

use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::Utc;

use super::{Cli, ImportCommand, progress_bar};

/// Imports one file and prints the line-by-line report.
pub(super) async fn run(cli: &Cli, cmd: &ImportCommand) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let store = cli.store(&config).await?;
    let (file, summary) = match cmd {
        ImportCommand::Caregivers { file, sync } => {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let bar = progress_bar("rows");
            let summary =
                crate::roster::import_caregivers_with_progress(&store, f, *sync, &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await;
            bar.finish_and_clear();
            (file, summary)
        }
        ImportCommand::Supervisors { file } => {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            (file, crate::roster::import_supervisors(&store, f).await)
        }
        ImportCommand::Training { file, flow } => {
            let catalog = cli.catalog()?;
            if catalog.get(flow).is_none() {
                bail!("no flow with id {flow:?}");
            }
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            (
                file,
                crate::roster::import_training(&store, f, flow, Utc::now()).await,
            )
        }
    };
    let summary = summary.with_context(|| format!("import of {} failed", file.display()))?;
    for (line, reason) in &summary.rejected {
        println!("line {line}: {reason}");
    }
    println!("{summary}");
    Ok(if summary.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
