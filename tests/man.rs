//! Man pages (man/) and shell completions (completions/) are generated from the clap
//! definitions; these fail when a checked-in copy is stale. `make man` writes them anew.
//!
//! Each tool has a page, and so has each of its subcommands (`zcommit-checkout(1)`, as git
//! does), because the tool's page lists its subcommands under those names. A SYNOPSIS names
//! every option with its argument (`[--store DIR]`), which clap_mangen's own leaves out.

use clap::{Arg, ArgAction, Command};
use std::path::{Path, PathBuf};

fn check_or_update(path: PathBuf, generated: Vec<u8>) {
    if std::env::var_os("ZKIT_UPDATE_MAN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == generated,
        "{} is stale: run `make man` and commit it",
        path.display()
    );
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `-t|--tag NAME`, `--no-cache`, `-v...`: how an option is written in a synopsis.
fn option_form(arg: &Arg) -> Option<String> {
    let mut form = match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => format!("-{s}|--{l}"),
        (Some(s), None) => format!("-{s}"),
        (None, Some(l)) => format!("--{l}"),
        (None, None) => return None,
    };
    if arg.get_action().takes_values() {
        let names = arg
            .get_value_names()
            .map(|v| v.join(" "))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        form = format!("{form} {names}");
    }
    if matches!(arg.get_action(), ArgAction::Count | ArgAction::Append) {
        form.push_str("...");
    }
    Some(form)
}

fn synopsis(cmd: &Command, name: &str) -> String {
    let mut line = vec![name.to_string()];
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
    {
        if let Some(form) = option_form(arg) {
            line.push(if arg.is_required_set() {
                form
            } else {
                format!("[{form}]")
            });
        }
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let mut value = arg
            .get_value_names()
            .map(|v| v.join(" "))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            value.push_str("...");
        }
        if arg.is_last_set() {
            value = format!("-- {value}");
        }
        line.push(if arg.is_required_set() {
            value
        } else {
            format!("[{value}]")
        });
    }
    if cmd.has_subcommands() {
        line.push(if cmd.is_subcommand_required_set() {
            "COMMAND".into()
        } else {
            "[COMMAND]".into()
        });
    }
    line.join(" ")
}

/// The tool's page and one page for each of its subcommands, as (file stem, page).
fn pages(tool: Command) -> Vec<(String, Vec<u8>)> {
    let name = tool.get_name().to_string();
    // `help` is not a page: `zcommit help X` shows what `zcommit-X(1)` holds.
    let mut tool = tool.disable_help_subcommand(true);
    tool.build();
    let mut pages = Vec::new();
    for sub in tool.get_subcommands().filter(|s| !s.is_hide_set()) {
        let stem = format!("{name}-{}", sub.get_name());
        let usage = synopsis(sub, &format!("{name} {}", sub.get_name()));
        let cmd = sub
            .clone()
            .name(leak(stem.clone()))
            .display_name(stem.clone())
            .bin_name(format!("{name} {}", sub.get_name()))
            .override_usage(usage)
            .version(leak(tool.get_version().unwrap_or_default().to_string()));
        let mut page = render(cmd);
        page.extend_from_slice(format!(".SH \"SEE ALSO\"\n\\fB{name}\\fR(1)\n").as_bytes());
        pages.push((stem, page));
    }
    let usage = synopsis(&tool, &name);
    let tool = tool.override_usage(usage);
    pages.insert(0, (name, render(tool)));
    pages
}

/// clap is built without its `string` feature, so a generated name must live forever.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn render(cmd: Command) -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page).unwrap();
    page
}

#[test]
fn man_pages_match_the_command_line() {
    let mut expected = Vec::new();
    for cmd in zkit::cli::commands() {
        for (stem, page) in pages(cmd) {
            check_or_update(root().join(format!("man/{stem}.1")), page);
            expected.push(format!("{stem}.1"));
        }
    }
    // A page left behind by a removed subcommand would still be installed.
    let mut present: Vec<String> = std::fs::read_dir(root().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(
        present, expected,
        "man/ holds pages no command has: remove them"
    );
}

#[test]
fn every_page_a_man_page_names_exists() {
    let man = root().join("man");
    for entry in std::fs::read_dir(&man).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // References look like `zcommit\-checkout(1)` in roff.
        for (at, _) in text.match_indices("(1)") {
            let start = text[..at]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '\\'))
                .map_or(0, |i| i + 1);
            let page = text[start..at].replace('\\', "");
            if page.starts_with('z') {
                assert!(
                    man.join(format!("{page}.1")).exists(),
                    "{} names {page}(1), which does not exist",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn shell_completions_match_the_command_line() {
    // The scripts register the tool with the shell, which then asks the tool itself
    // (`COMPLETE=bash zcommit -- WORDS`): what `COMPLETE=SHELL TOOL` prints.
    use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
    for cmd in zkit::cli::commands() {
        let name = cmd.get_name().to_string();
        let shells: [(&dyn EnvCompleter, String); 3] = [
            (&Bash, name.clone()),
            (&Zsh, format!("_{name}")),
            (&Fish, format!("{name}.fish")),
        ];
        for (shell, file) in shells {
            let mut script = Vec::new();
            shell
                .write_registration("COMPLETE", &name, &name, &name, &mut script)
                .unwrap();
            let path = format!("completions/{}/{file}", shell.name());
            check_or_update(root().join(path), script);
        }
    }
}

#[test]
fn completions_offer_the_store_s_tags_and_runtimes() {
    // What the shell gets on Tab, asked as the registered bash function asks.
    let dir = tempfile::tempdir().unwrap();
    let (store, src) = (dir.path().join("store"), dir.path().join("src"));
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let zcommit = env!("CARGO_BIN_EXE_zcommit");
    for tag in ["app/1.0", "app/2", "base/1"] {
        let ok = std::process::Command::new(zcommit)
            .args([
                "--store".as_ref(),
                store.as_os_str(),
                "-t".as_ref(),
                tag.as_ref(),
            ])
            .arg(&src)
            .output()
            .unwrap();
        assert!(ok.status.success());
    }
    let complete = |tool: &str, words: &[&str]| -> Vec<String> {
        let out = std::process::Command::new(tool)
            .env("ZKIT_STORE", &store)
            .env("COMPLETE", "bash")
            .env("_CLAP_IFS", "\n")
            .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
            .arg("--")
            .args(words)
            .output()
            .unwrap();
        assert!(out.status.success(), "{words:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        complete(zcommit, &["zcommit", "ls", "ap"]),
        ["app/1.0", "app/2"]
    );
    assert_eq!(
        complete(zcommit, &["zcommit", "diff", "app/2", "base/1,app/1"]),
        ["base/1,app/1.0"]
    );
    assert_eq!(complete(zcommit, &["zcommit", "untag", "b"]), ["base/1"]);
    let zmount = env!("CARGO_BIN_EXE_zmount");
    assert_eq!(
        complete(zmount, &["zmount", "run", "--edit", "base"]),
        ["base/1"]
    );
    // No store: no names, no error, and no store made.
    std::fs::remove_dir_all(&store).unwrap();
    assert!(complete(zcommit, &["zcommit", "ls", "a"]).is_empty());
    assert!(!store.exists());
}
