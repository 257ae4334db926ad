//! The layering check: a module of `bot/` may use modules of its own layer and of the layers
//! below it, never one above. The layers are written down here, lowest first; CI fails on an
//! import that runs up them. It reads the source (every `crate::` path outside `#[cfg(test)]`
//! code), so it needs no tool beyond the test harness.
//!
//! `KNOWN` lists the up-imports that exist today and are being taken apart (issue 17); it only
//! shrinks: an up-import not on it fails, and so does an entry that no longer occurs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first, and the top-level modules of `bot/` in each.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves: no carebot imports beyond each other.
    (
        "foundation",
        &["text", "clock", "metrics", "sms", "domain", "quiet_hours"],
    ),
    // The vocabulary every layer above speaks.
    ("model", &["model", "privacy"]),
    // Reading flows, templates, settings and the words of consent: pure, no I/O but files.
    (
        "language",
        &["flow", "render", "consent", "catalog", "config"],
    ),
    // Providers' wire formats and clients: verify, normalize, acknowledge, send.
    ("channels", &["channel"]),
    // Everything carebot keeps.
    ("store", &["store"]),
    // What carebot decides and does: the runner and the programs on it.
    (
        "programs",
        &[
            "runner",
            "escalation",
            "shifts",
            "scheduler",
            "report",
            "roster",
            "transcript",
        ],
    ),
    // Sending what was decided.
    ("dispatch", &["dispatch"]),
    // HTTP: webhooks, health, metrics.
    ("web", &["web"]),
    // The process that runs it all.
    ("server", &["server"]),
    // The command line, on top.
    ("cli", &["cli"]),
];

/// Up-imports that exist today, as (from, to) top-level modules. Remove an entry when its
/// import goes; never add one.
const KNOWN: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `bot/` belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(bot: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(bot).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// The source without comments and without its `#[cfg(test)]` module (unit tests may reach
/// anywhere).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`: `crate::store::Write`,
/// `use crate::{flow::Flow, store}` and the like.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::x, b}`: the first segment of each item at the top of the braces.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        found.insert(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// Every (from, to, file) where a module uses one in a higher layer.
fn up_imports(bot: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    rust_files(bot, &mut files);
    files.sort();
    let mut up = Vec::new();
    for file in files {
        let Some(from) = module_of(bot, &file) else {
            continue;
        };
        let from_layer = layer_of(&from).unwrap_or_else(|| {
            panic!(
                "bot/{from} is in no layer: add it to LAYERS in tests/layers.rs, where it \
                 belongs"
            )
        });
        let text = std::fs::read_to_string(&file).unwrap();
        for to in named_modules(&code(&text)) {
            if to == from {
                continue;
            }
            let Some(to_layer) = layer_of(&to) else {
                continue; // an item of lib.rs, or a macro
            };
            if to_layer > from_layer {
                let rel = file.strip_prefix(bot.parent().unwrap()).unwrap();
                up.push((from.clone(), to, rel.display().to_string()));
            }
        }
    }
    up
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let bot = Path::new(env!("CARGO_MANIFEST_DIR")).join("bot");
    let up = up_imports(&bot);
    let mut by_pair: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (from, to, file) in up {
        by_pair.entry((from, to)).or_default().push(file);
    }
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    let new: Vec<String> = by_pair
        .iter()
        .filter(|(pair, _)| !known.contains(*pair))
        .map(|((from, to), files)| {
            format!(
                "{from} ({}) uses {to} ({}) in {}",
                LAYERS[layer_of(from).unwrap()].0,
                LAYERS[layer_of(to).unwrap()].0,
                files.join(", ")
            )
        })
        .collect();
    assert!(
        new.is_empty(),
        "imports that run up the layers (see LAYERS in tests/layers.rs):\n  {}",
        new.join("\n  ")
    );
    let gone: Vec<&(String, String)> = known
        .iter()
        .filter(|pair| !by_pair.contains_key(*pair))
        .collect();
    assert!(
        gone.is_empty(),
        "no longer imported: take these out of KNOWN in tests/layers.rs: {gone:?}"
    );
}

/// The check itself, on made-up source: it must see the forms imports take.
#[test]
fn the_check_sees_every_form_of_import() {
    let source = "use crate::store::{Plan, Write};\n\
                  use crate::{flow::Flow, render::{self, Renderer}, text};\n\
                  fn f() { crate::runner::reach(); } // crate::server::x\n\
                  #[cfg(test)]\nmod tests { use crate::cli; }\n";
    let named: Vec<String> = named_modules(&code(source)).into_iter().collect();
    assert_eq!(named, ["flow", "render", "runner", "store", "text"]);
}

/// Every module of `bot/` has its layer (a new module must be placed on purpose).
#[test]
fn every_module_has_a_layer() {
    let bot = Path::new(env!("CARGO_MANIFEST_DIR")).join("bot");
    let mut files = Vec::new();
    rust_files(&bot, &mut files);
    let missing: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(&bot, f))
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(missing.is_empty(), "not in LAYERS: {missing:?}");
}
