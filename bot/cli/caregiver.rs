//! `carebot caregiver export|erase`: a caregiver's right to their data, at the command line.
//! The store does the work (`store/sql/privacy.rs`); this is the clap surface and the words
//! an operator reads.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;

use crate::privacy::{Erasure, Person};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum CaregiverCommand {
    /// Print everything carebot holds about one caregiver as JSON: profile, consent history,
    /// messages, answers, escalations about them, shift offers and training.
    Export {
        /// Their phone number (+1…) or external id.
        who: String,
    },
    /// Remove or anonymise every row about one caregiver: their waiting conversations end and
    /// their queued messages are cancelled first; totals stay; an opt-out is remembered as a
    /// hash so a later import never texts the number. Safe to run again.
    Erase {
        /// Their phone number (+1…) or external id.
        who: String,
        /// Required: erasing cannot be undone.
        #[arg(long)]
        confirm: bool,
    },
}

/// Runs one `caregiver` command: the report on `out`, a refusal on `err`.
pub async fn run<S: Store>(
    store: &S,
    cmd: &CaregiverCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        CaregiverCommand::Export { who } => {
            let who = Person::parse(who);
            match store.export_caregiver(&who, Utc::now()).await? {
                Some(export) => {
                    writeln!(out, "{}", serde_json::to_string_pretty(&export)?)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    writeln!(err, "no caregiver matches {who}")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        CaregiverCommand::Erase { who, confirm } => {
            let who = Person::parse(who);
            if !confirm {
                writeln!(
                    err,
                    "erasing {who} cannot be undone: run again with --confirm (nothing changed)"
                )?;
                return Ok(ExitCode::from(2));
            }
            match store.erase_caregiver(&who, Utc::now()).await? {
                Erasure::Erased(done) => {
                    writeln!(out, "{done}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Erasure::AlreadyErased(day) => {
                    writeln!(out, "{who} was erased on {day}; nothing left to erase")?;
                    Ok(ExitCode::SUCCESS)
                }
                Erasure::NoMatch => {
                    writeln!(err, "no caregiver matches {who} (nothing changed)")?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
