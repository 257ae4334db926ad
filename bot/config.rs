//! Typed settings, from lowest to highest precedence: defaults, `carebot.toml`, environment,
//! flags. Secrets are redacted in `Debug` so a settings dump in a log never leaks a token.

use std::fmt;
use std::path::Path;

use std::collections::BTreeMap;

use chrono::{Duration, NaiveTime};

use crate::domain::Priority;
use crate::flow::definition::Program;
use crate::privacy::Retention;
use crate::quiet_hours::Window;
use crate::render::Agency;

// ---------------------------------------------------------------------------------------------
// What the runner and the programs are configured with (read from the settings below).

/// What the runner needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub agency: Agency,
    /// When program messages may reach caregivers, in their own time zone.
    pub caregiver_window: Window,
    /// When non-urgent alerts may reach supervisors, in their own time zone.
    pub supervisor_window: Window,
    /// Who alerts go to after a caregiver's supervisor, and how long they wait for an ACK.
    pub escalation: EscalationSettings,
    /// Contact pressure: the weekly cap and the order of programs.
    pub pressure: Pressure,
}

/// Contact pressure: at most `weekly_cap` program conversations per caregiver in any 7 days
/// (0: no cap; the opt-in is never counted), and which program goes first when several
/// starts are due at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pressure {
    pub weekly_cap: u32,
    /// Highest priority first. Programs not listed come after, in their usual order.
    pub priority: Vec<Program>,
}

impl Default for Pressure {
    fn default() -> Self {
        Pressure {
            weekly_cap: 3,
            priority: Program::CAPPED.to_vec(),
        }
    }
}

impl Pressure {
    /// Parses `CAREBOT_PROGRAM_PRIORITY`: programs, highest first, separated by commas or `>`.
    pub fn parse_priority(s: &str) -> Result<Vec<Program>, String> {
        let mut out = Vec::new();
        for name in s.split([',', '>']).map(str::trim).filter(|n| !n.is_empty()) {
            let program: Program = name.parse()?;
            if !out.contains(&program) {
                out.push(program);
            }
        }
        Ok(out)
    }

    /// Lower goes first; onboarding (the opt-in request) before everything.
    pub fn rank(&self, program: Program) -> i64 {
        if program == Program::Onboarding {
            return 0;
        }
        let listed = self.priority.iter().position(|p| *p == program);
        let usual = Program::CAPPED
            .iter()
            .position(|p| *p == program)
            .unwrap_or(0);
        1 + listed.unwrap_or(self.priority.len() + usual) as i64
    }
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            agency: Agency {
                name: "your agency".into(),
                phone: "the office".into(),
            },
            caregiver_window: Window::default(),
            supervisor_window: Window::default(),
            escalation: Default::default(),
            pressure: Pressure::default(),
        }
    }
}

/// Who alerts go to besides a caregiver's own supervisor, and how long each priority waits for
/// an acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationSettings {
    pub ack_window_high: Duration,
    pub ack_window_normal: Duration,
    pub ack_window_low: Duration,
    /// Branch name -> the supervisors-roster external id of the branch's contact (its manager):
    /// the level after a caregiver's supervisor, or the first when the caregiver has none.
    pub branch_contacts: BTreeMap<String, String>,
    /// Supervisors-roster external ids of program staff: the last level, all of them at once.
    pub program_staff: Vec<String>,
    /// When, in each supervisor's own time zone, the digest of their open alerts goes out.
    pub digest_at: NaiveTime,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        EscalationSettings {
            ack_window_high: Duration::hours(2),
            ack_window_normal: Duration::hours(24),
            ack_window_low: Duration::hours(72),
            branch_contacts: BTreeMap::new(),
            program_staff: Vec::new(),
            digest_at: NaiveTime::from_hms_opt(8, 0, 0).expect("valid"),
        }
    }
}

impl EscalationSettings {
    /// How long an alert of `priority` may wait for an acknowledgement.
    pub fn window(&self, priority: Priority) -> Duration {
        match priority {
            Priority::High => self.ack_window_high,
            Priority::Normal => self.ack_window_normal,
            Priority::Low => self.ack_window_low,
        }
    }

    /// Every external id the settings name, for the store to look up.
    pub fn named(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .branch_contacts
            .values()
            .chain(&self.program_staff)
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Parses `Chicago North=S9; Peoria=S12` (branch=external id, separated by `;`).
    pub fn parse_branch_contacts(text: &str) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (branch, id) = pair
                .split_once('=')
                .map(|(b, i)| (b.trim(), i.trim()))
                .filter(|(b, i)| !b.is_empty() && !i.is_empty())
                .ok_or_else(|| {
                    format!("{pair:?} is not BRANCH=SUPERVISOR_ID (e.g. Chicago North=S9)")
                })?;
            out.insert(branch.to_owned(), id.to_owned());
        }
        Ok(out)
    }

    /// Parses `P1, P2` (external ids separated by `,` or `;`).
    pub fn parse_staff(text: &str) -> Vec<String> {
        text.split([',', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The settings

/// What templates call the agency until `CAREBOT_AGENCY_NAME` says otherwise.
pub const DEFAULT_AGENCY_NAME: &str = "your home-care agency";

/// A secret that prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub port: u16,
    pub public_url: Option<String>,
    pub twilio: Option<TwilioConfig>,
    pub telegram_bot_token: Option<Secret>,
    pub telegram_webhook_secret: Option<Secret>,
    pub telegram_api_url: String,
    pub sms_mps: f64,
    pub telegram_mps: f64,
    /// Messages per second to any one Telegram chat (`CAREBOT_TELEGRAM_CHAT_MPS`, default 1).
    pub telegram_chat_mps: f64,
    pub runner: RunnerSettings,
    /// `CAREBOT_RETENTION_DAYS` and `CAREBOT_CONSENT_RETENTION_DAYS`.
    pub retention: Retention,
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub api_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// Where a setting's value comes from, highest precedence first.
struct Sources {
    flags: Vec<(String, String)>,
    file: toml::Table,
}

impl Sources {
    fn get(&self, env: &str) -> Option<String> {
        if let Some((_, v)) = self.flags.iter().find(|(k, _)| k == env) {
            return Some(v.clone());
        }
        if let Ok(v) = std::env::var(env)
            && !v.is_empty()
        {
            return Some(v);
        }
        // In carebot.toml the keys are the variable names in lowercase, without CAREBOT_.
        let key = env.to_lowercase();
        let key = key.strip_prefix("carebot_").unwrap_or(&key);
        self.file.get(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

impl Config {
    /// Loads settings. `file` is `carebot.toml` unless given; a missing default file is fine.
    /// `flags` are `(ENV_NAME, value)` pairs from the command line.
    // Long because it reads every setting in one place, each a line or two (file, then
    // environment, then flags), so an operator can see every name carebot looks at.
    pub fn load(file: Option<&Path>, flags: Vec<(String, String)>) -> Result<Config, ConfigError> {
        let path = file.unwrap_or(Path::new("carebot.toml"));
        let table = match std::fs::read_to_string(path) {
            Ok(text) => text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if file.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                toml::Table::new()
            }
            Err(e) => {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let s = Sources { flags, file: table };
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        let number = |key: &str, default: f64| -> Result<f64, ConfigError> {
            match s.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| *n > 0.0)
                    .ok_or_else(|| invalid(key, format!("{v:?} is not a positive number"))),
            }
        };
        let window = |key: &str| -> Result<Window, ConfigError> {
            s.get(key).map_or(Ok(Window::default()), |v| {
                Window::parse(&v).map_err(|e| invalid(key, e))
            })
        };

        let twilio = match (s.get("TWILIO_ACCOUNT_SID"), s.get("TWILIO_AUTH_TOKEN")) {
            (Some(account_sid), Some(token)) => {
                let from = s.get("TWILIO_FROM");
                let messaging_service_sid = s.get("TWILIO_MESSAGING_SERVICE_SID");
                if from.is_none() && messaging_service_sid.is_none() {
                    return Err(invalid(
                        "TWILIO_FROM",
                        "set TWILIO_FROM (an E.164 number) or TWILIO_MESSAGING_SERVICE_SID".into(),
                    ));
                }
                if let Some(f) = &from {
                    crate::domain::Phone::parse(f)
                        .map_err(|e| invalid("TWILIO_FROM", format!("{e}")))?;
                }
                Some(TwilioConfig {
                    account_sid,
                    auth_token: Secret(token),
                    from,
                    messaging_service_sid,
                    api_url: s
                        .get("TWILIO_API_URL")
                        .unwrap_or_else(|| "https://api.twilio.com".into())
                        .trim_end_matches('/')
                        .to_owned(),
                })
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "TWILIO_AUTH_TOKEN",
                    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN go together".into(),
                ));
            }
        };
        let port = match s.get("PORT") {
            None => 8080,
            Some(p) => p
                .parse()
                .map_err(|_| invalid("PORT", format!("{p:?} is not a port number")))?,
        };
        let duration =
            |key: &str, default: chrono::Duration| -> Result<chrono::Duration, ConfigError> {
                match s.get(key) {
                    None => Ok(default),
                    Some(v) => crate::flow::definition::parse_duration(&v)
                        .ok()
                        .and_then(|d| chrono::Duration::from_std(d).ok())
                        .ok_or_else(|| {
                            invalid(key, format!("{v:?} is not a duration like 2h, 24h or 3d"))
                        }),
                }
            };
        let supervisor_window = window("CAREBOT_SUPERVISOR_WINDOW")?;
        let defaults = EscalationSettings::default();
        let digest_at = match s.get("CAREBOT_DIGEST_AT") {
            None => supervisor_window.start.max(defaults.digest_at),
            Some(v) => chrono::NaiveTime::parse_from_str(v.trim(), "%H:%M").map_err(|_| {
                invalid(
                    "CAREBOT_DIGEST_AT",
                    format!("{v:?} is not a time like 08:30"),
                )
            })?,
        };
        if digest_at < supervisor_window.start || digest_at >= supervisor_window.end {
            return Err(invalid(
                "CAREBOT_DIGEST_AT",
                format!(
                    "{} is outside CAREBOT_SUPERVISOR_WINDOW ({}-{}), so no digest would ever go out",
                    digest_at.format("%H:%M"),
                    supervisor_window.start.format("%H:%M"),
                    supervisor_window.end.format("%H:%M")
                ),
            ));
        }
        let escalation = EscalationSettings {
            ack_window_high: duration("CAREBOT_ACK_WINDOW_HIGH", defaults.ack_window_high)?,
            ack_window_normal: duration("CAREBOT_ACK_WINDOW_NORMAL", defaults.ack_window_normal)?,
            ack_window_low: duration("CAREBOT_ACK_WINDOW_LOW", defaults.ack_window_low)?,
            branch_contacts: match s.get("CAREBOT_BRANCH_CONTACTS") {
                None => Default::default(),
                Some(v) => EscalationSettings::parse_branch_contacts(&v)
                    .map_err(|e| invalid("CAREBOT_BRANCH_CONTACTS", e))?,
            },
            program_staff: s
                .get("CAREBOT_PROGRAM_STAFF")
                .map(|v| EscalationSettings::parse_staff(&v))
                .unwrap_or_default(),
            digest_at,
        };
        let days = |key: &str, default: u32| -> Result<u32, ConfigError> {
            match s.get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        invalid(key, format!("{v:?} is not a positive whole number of days"))
                    }),
            }
        };
        let defaults = Retention::default();
        let retention = Retention::new(
            days("CAREBOT_RETENTION_DAYS", defaults.days)?,
            days("CAREBOT_CONSENT_RETENTION_DAYS", defaults.consent_days)?,
        )
        .map_err(|(key, message)| invalid(key, message))?;
        Ok(Config {
            retention,
            database_url: s
                .get("DATABASE_URL")
                .unwrap_or_else(|| "sqlite://carebot.db".into()),
            port,
            public_url: s
                .get("CAREBOT_PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_owned()),
            twilio,
            telegram_bot_token: s.get("TELEGRAM_BOT_TOKEN").map(Secret),
            telegram_webhook_secret: match s.get("TELEGRAM_WEBHOOK_SECRET") {
                Some(secret) if !valid_webhook_secret(&secret) => {
                    return Err(invalid(
                        "TELEGRAM_WEBHOOK_SECRET",
                        "must be 1 to 256 characters, each A-Z, a-z, 0-9, _ or - (Telegram's rule)"
                            .into(),
                    ));
                }
                secret => secret.map(Secret),
            },
            telegram_api_url: s
                .get("TELEGRAM_API_URL")
                .unwrap_or_else(|| "https://api.telegram.org".into()),
            sms_mps: number("CAREBOT_SMS_MPS", 1.0)?,
            telegram_mps: number("CAREBOT_TELEGRAM_MPS", 30.0)?,
            telegram_chat_mps: number("CAREBOT_TELEGRAM_CHAT_MPS", 1.0)?,
            runner: RunnerSettings {
                agency: Agency {
                    name: s
                        .get("CAREBOT_AGENCY_NAME")
                        .unwrap_or_else(|| DEFAULT_AGENCY_NAME.into()),
                    phone: s
                        .get("CAREBOT_AGENCY_PHONE")
                        .unwrap_or_else(|| "the office".into()),
                },
                caregiver_window: window("CAREBOT_SEND_WINDOW")?,
                supervisor_window,
                escalation,
                pressure: Pressure {
                    weekly_cap: match s.get("CAREBOT_WEEKLY_CAP") {
                        None => Pressure::default().weekly_cap,
                        Some(v) => v.parse().map_err(|_| {
                            invalid(
                                "CAREBOT_WEEKLY_CAP",
                                format!("{v:?} is not a whole number (0 turns the cap off)"),
                            )
                        })?,
                    },
                    priority: match s.get("CAREBOT_PROGRAM_PRIORITY") {
                        None => Pressure::default().priority,
                        Some(v) => Pressure::parse_priority(&v)
                            .map_err(|e| invalid("CAREBOT_PROGRAM_PRIORITY", e))?,
                    },
                },
            },
        })
    }
}

/// Telegram's rule for `setWebhook`'s `secret_token`, which comes back in every webhook request.
pub fn valid_webhook_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A database URL safe to print: no password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_branch_contacts_and_staff() {
        let map =
            EscalationSettings::parse_branch_contacts("Chicago North=S9; Peoria = S12;").unwrap();
        assert_eq!(map.get("Chicago North").map(String::as_str), Some("S9"));
        assert_eq!(map.get("Peoria").map(String::as_str), Some("S12"));
        assert!(EscalationSettings::parse_branch_contacts("Chicago North").is_err());
        assert_eq!(
            EscalationSettings::parse_staff("P1, P2;P3"),
            vec!["P1", "P2", "P3"]
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let flags = vec![
            ("TWILIO_ACCOUNT_SID".to_owned(), "AC123".to_owned()),
            (
                "TWILIO_AUTH_TOKEN".to_owned(),
                "super-secret-token".to_owned(),
            ),
            ("TWILIO_FROM".to_owned(), "+13125550100".to_owned()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load(Some(&dir.path().join("none.toml")), flags);
        // An explicitly named file that is missing is an error...
        assert!(cfg.is_err());
        let file = dir.path().join("carebot.toml");
        std::fs::write(&file, "agency_name = \"Sunrise\"\nsms_mps = 10\n").unwrap();
        let flags = vec![
            ("TWILIO_ACCOUNT_SID".to_owned(), "AC123".to_owned()),
            (
                "TWILIO_AUTH_TOKEN".to_owned(),
                "super-secret-token".to_owned(),
            ),
            ("TWILIO_FROM".to_owned(), "+13125550100".to_owned()),
        ];
        let cfg = Config::load(Some(&file), flags).unwrap();
        let dump = format!("{cfg:?}");
        assert!(!dump.contains("super-secret-token"), "{dump}");
        // ...and the file's values are read, with flags above them.
        assert_eq!(cfg.runner.agency.name, "Sunrise");
        assert_eq!(cfg.sms_mps, 10.0);
    }

    #[test]
    fn escalation_settings_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("carebot.toml");
        std::fs::write(
            &file,
            "ack_window_high = \"90m\"\nbranch_contacts = \"Chicago North=S9; Peoria=S12\"\nprogram_staff = \"P1,P2\"\n",
        )
        .unwrap();
        let flags = vec![("CAREBOT_DIGEST_AT".to_owned(), "08:30".to_owned())];
        let cfg = Config::load(Some(&file), flags).unwrap();
        let e = &cfg.runner.escalation;
        assert_eq!(e.ack_window_high, chrono::Duration::minutes(90));
        assert_eq!(e.ack_window_normal, chrono::Duration::hours(24));
        assert_eq!(e.branch_contacts["Peoria"], "S12");
        assert_eq!(e.program_staff, vec!["P1", "P2"]);
        assert_eq!(e.digest_at.format("%H:%M").to_string(), "08:30");

        let flags = vec![("CAREBOT_DIGEST_AT".to_owned(), "22:00".to_owned())];
        let err = Config::load(Some(&file), flags).unwrap_err().to_string();
        assert!(err.contains("outside CAREBOT_SUPERVISOR_WINDOW"), "{err}");
    }

    #[test]
    fn retention_settings_must_be_days_and_the_ledger_must_outlive_the_messages() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("carebot.toml");
        std::fs::write(&file, "").unwrap();
        let load = |pairs: &[(&str, &str)]| {
            let flags = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::load(Some(&file), flags)
        };
        let cfg = load(&[]).unwrap();
        assert_eq!(cfg.retention, Retention::default());
        let cfg = load(&[("CAREBOT_RETENTION_DAYS", "90")]).unwrap();
        assert_eq!((cfg.retention.days, cfg.retention.consent_days), (90, 1461));
        for bad in ["0", "-5", "a year", "1.5"] {
            let err = load(&[("CAREBOT_RETENTION_DAYS", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("CAREBOT_RETENTION_DAYS: "), "{err}");
        }
        let err = load(&[
            ("CAREBOT_RETENTION_DAYS", "730"),
            ("CAREBOT_CONSENT_RETENTION_DAYS", "365"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("CAREBOT_CONSENT_RETENTION_DAYS: 365 days is shorter"),
            "{err}"
        );
    }

    #[test]
    fn a_webhook_secret_telegram_would_refuse_is_refused_here() {
        assert!(valid_webhook_secret("abc_DEF-123"));
        for bad in ["", "has space", "slash/", &"x".repeat(257)] {
            assert!(!valid_webhook_secret(bad), "{bad:?}");
            let flags = vec![("TELEGRAM_WEBHOOK_SECRET".to_owned(), bad.to_owned())];
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("carebot.toml");
            std::fs::write(&file, "").unwrap();
            if !bad.is_empty() {
                assert!(Config::load(Some(&file), flags).is_err(), "{bad:?}");
            }
        }
    }
}
