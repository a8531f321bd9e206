//! Man pages (man/) and shell completions (completions/) are generated from the clap
//! definitions; these fail when a checked-in copy is stale. `make man` writes them anew.

use clap_complete::Shell;
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

#[test]
fn man_pages_match_the_command_line() {
    for cmd in zkit::cli::commands() {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page).unwrap();
        check_or_update(root().join(format!("man/{name}.1")), page);
    }
}

#[test]
fn shell_completions_match_the_command_line() {
    for mut cmd in zkit::cli::commands() {
        let name = cmd.get_name().to_string();
        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut script);
            check_or_update(root().join(format!("completions/{shell}/{file}")), script);
        }
    }
}
