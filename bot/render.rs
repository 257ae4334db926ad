//! Message text: minijinja over `templates/<lang>/…`, strict about undefined variables, with an
//! English fallback when a translation is missing. The runner renders every event the engine
//! emits through here, so what `flows check` renders is exactly what a caregiver would read.

pub mod desk;
pub mod shifts;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::domain::Lang;
use crate::flow::engine::Person;
use crate::flow::{Problem, Severity};

/// Templates every deployment needs, whatever its flows: consent replies and re-ask hints.
pub const SYSTEM_TEMPLATES: &[&str] = &[
    "system/stop",
    "system/start",
    "system/help",
    "system/stranger",
    "system/hint_choice",
    "system/hint_scale",
    "system/hint_number",
    "system/hint_yes_no",
    "system/hint_text",
    "system/hint_keyword",
    "system/escalation_consent",
    // A message that may mean stop: "Do you want to stop all messages? Reply STOP to confirm."
    "system/stop_confirm",
    // A caregiver reachable on SMS and Telegram: what STOP and STOP ALL confirm.
    "system/stop_telegram_too",
    "system/stop_all",
    // Telegram: linking a chat, consent and commands, taps.
    "telegram/welcome",
    "telegram/share_button",
    "telegram/linked",
    "telegram/supervisor_linked",
    "telegram/not_own_contact",
    "telegram/not_on_roster",
    "telegram/invite_invalid",
    "telegram/help",
    "telegram/stop",
    "telegram/stop_sms_too",
    "telegram/stop_confirm",
    "telegram/language_prompt",
    "telegram/language_set",
    "telegram/question_closed",
    "telegram/text_only",
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {0:?} does not exist in any language")]
    Missing(String),
    #[error("template {name} ({lang}): {message}")]
    Failed {
        name: String,
        lang: Lang,
        message: String,
    },
}

impl From<RenderError> for crate::model::DecideError {
    fn from(e: RenderError) -> Self {
        crate::model::DecideError::Template(Box::new(e))
    }
}

/// Every template under one directory, compiled once at start-up.
pub struct Templates {
    env: Environment<'static>,
    available: BTreeSet<(Lang, String)>,
    root: PathBuf,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("root", &self.root)
            .field("count", &self.available.len())
            .finish()
    }
}

/// The agency as templates see it (`agency.name`, `agency.phone`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Agency {
    pub name: String,
    pub phone: String,
}

/// A supervisor as templates see one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SupervisorView {
    pub name: String,
}

/// What an alert template sees as `escalation.*`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EscalationView {
    pub id: Option<i64>,
    pub priority: String,
    pub reason: String,
    pub answer: String,
}

/// Everything a template may use. Absent parts (`escalation` outside alerts) are undefined, so
/// a template that uses them fails `flows check` instead of texting a blank.
#[derive(Debug, Clone, Serialize)]
pub struct MessageContext<'a> {
    pub caregiver: CaregiverView<'a>,
    pub agency: &'a Agency,
    pub supervisor: SupervisorView,
    pub answers: &'a BTreeMap<String, Value>,
    pub vars: &'a BTreeMap<String, Value>,
    pub flow: FlowView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaregiverView<'a> {
    #[serde(flatten)]
    pub person: &'a Person,
    pub last_name: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowView<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

impl Templates {
    /// Loads `root/<lang>/**/*.txt`. Syntax errors come back as problems (with file and line);
    /// the templates that compiled are still usable so `flows check` can report everything.
    pub fn load(root: &Path) -> (Templates, Vec<Problem>) {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Texts are plain, not HTML: never escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let mut available = BTreeSet::new();
        let mut problems = Vec::new();
        for lang in Lang::ALL {
            let dir = root.join(lang.code());
            let mut files = Vec::new();
            collect_txt(&dir, &mut files);
            files.sort();
            for path in files {
                let rel = path
                    .strip_prefix(&dir)
                    .expect("collected under dir")
                    .with_extension("");
                let name = rel.to_string_lossy().replace('\\', "/");
                let source = match std::fs::read_to_string(&path) {
                    Ok(s) => s,
                    Err(e) => {
                        problems.push(problem(&path, 1, format!("cannot read: {e}")));
                        continue;
                    }
                };
                let key = format!("{}/{name}", lang.code());
                match env.add_template_owned(key, source) {
                    Ok(()) => {
                        available.insert((lang, name));
                    }
                    Err(e) => problems.push(problem(
                        &path,
                        e.line().unwrap_or(1) as u64,
                        e.detail().unwrap_or("syntax error").to_owned(),
                    )),
                }
            }
        }
        (
            Templates {
                env,
                available,
                root: root.to_owned(),
            },
            problems,
        )
    }

    pub fn has(&self, name: &str, lang: Lang) -> bool {
        self.available.contains(&(lang, name.to_owned()))
    }

    /// The file a template lives in, for messages.
    pub fn path(&self, name: &str, lang: Lang) -> PathBuf {
        self.root.join(lang.code()).join(format!("{name}.txt"))
    }

    /// Renders `name` in `lang`, falling back to English when there is no translation.
    /// Returns the text with surrounding whitespace trimmed and the language actually used.
    /// `ctx` is a [`MessageContext`] for caregiver messages and alerts; supervisor messages
    /// and alerts rendered after they were raised bring their own.
    pub fn render<C: Serialize>(
        &self,
        name: &str,
        lang: Lang,
        ctx: &C,
    ) -> Result<(String, Lang), RenderError> {
        let used = if self.has(name, lang) {
            lang
        } else if self.has(name, Lang::En) {
            Lang::En
        } else {
            return Err(RenderError::Missing(name.to_owned()));
        };
        let tmpl = self
            .env
            .get_template(&format!("{}/{name}", used.code()))
            .map_err(|e| RenderError::Failed {
                name: name.to_owned(),
                lang: used,
                message: e.to_string(),
            })?;
        let text = tmpl
            .render(minijinja::value::Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| RenderError::Failed {
                name: name.to_owned(),
                lang: used,
                message: render_message(&e),
            })?;
        Ok((text.trim().to_owned(), used))
    }

    /// Line of a render error inside its template, for `flows check`.
    pub fn error_line(err: &RenderError) -> u64 {
        match err {
            RenderError::Failed { message, .. } => message
                .rsplit_once("line ")
                .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
                .unwrap_or(1),
            RenderError::Missing(_) => 1,
        }
    }
}

fn render_message(e: &minijinja::Error) -> String {
    let mut msg = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    if msg.is_empty() {
        msg = e.kind().to_string();
    }
    match e.line() {
        Some(line) => format!("{msg} (line {line})"),
        None => msg,
    }
}

fn problem(path: &Path, line: u64, message: String) -> Problem {
    Problem {
        file: path.display().to_string(),
        line,
        column: 1,
        severity: Severity::Error,
        message,
    }
}

fn collect_txt(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_txt(&path, out);
        } else if path.extension().is_some_and(|e| e == "txt") {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Person {
        Person {
            first_name: "Maria".into(),
            language: Lang::Es,
            branch: "Chicago North".into(),
            timezone: "America/Chicago".into(),
            groups: vec![],
            fields: BTreeMap::new(),
            tags: vec![],
        }
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn renders_in_the_caregivers_language_and_falls_back_to_english() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "en/a.txt", "Hi {{ caregiver.first_name }}!\n");
        write(
            dir.path(),
            "es/a.txt",
            "¡Hola {{ caregiver.first_name }}!\n",
        );
        write(dir.path(), "en/b.txt", "Only English, {{ agency.name }}\n");
        let (t, problems) = Templates::load(dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        let p = person();
        let agency = Agency {
            name: "Sunrise".into(),
            phone: "1".into(),
        };
        let empty = BTreeMap::new();
        let ctx = MessageContext {
            caregiver: CaregiverView {
                person: &p,
                last_name: "G",
            },
            agency: &agency,
            supervisor: SupervisorView {
                name: "Dana".into(),
            },
            answers: &empty,
            vars: &empty,
            flow: FlowView { id: "f", name: "F" },
            escalation: None,
        };
        assert_eq!(
            t.render("a", Lang::Es, &ctx).unwrap(),
            ("¡Hola Maria!".to_owned(), Lang::Es)
        );
        assert_eq!(
            t.render("b", Lang::Es, &ctx).unwrap(),
            ("Only English, Sunrise".to_owned(), Lang::En)
        );
        assert!(matches!(
            t.render("c", Lang::Es, &ctx),
            Err(RenderError::Missing(_))
        ));
    }

    #[test]
    fn a_misspelled_variable_is_an_error_not_a_blank() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "en/a.txt",
            "line one\nHi {{ caregiver.frist_name }}\n",
        );
        let (t, _) = Templates::load(dir.path());
        let p = person();
        let agency = Agency {
            name: "S".into(),
            phone: "1".into(),
        };
        let empty = BTreeMap::new();
        let ctx = MessageContext {
            caregiver: CaregiverView {
                person: &p,
                last_name: "G",
            },
            agency: &agency,
            supervisor: SupervisorView { name: "D".into() },
            answers: &empty,
            vars: &empty,
            flow: FlowView { id: "f", name: "F" },
            escalation: None,
        };
        let err = t.render("a", Lang::En, &ctx).unwrap_err();
        assert_eq!(Templates::error_line(&err), 2, "{err}");
    }

    #[test]
    fn syntax_errors_are_reported_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "en/bad.txt", "ok\n{% if %}\n");
        let (_, problems) = Templates::load(dir.path());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].file.ends_with("en/bad.txt"));
        assert_eq!(problems[0].line, 2);
    }
}
