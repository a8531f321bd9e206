//! The man pages in man/ are generated from the clap definitions; this fails when one is stale.
//! `make man` (ZKIT_UPDATE_MAN=1) writes them anew.

use std::path::Path;

#[test]
fn man_pages_match_the_command_line() {
    let update = std::env::var_os("ZKIT_UPDATE_MAN").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for cmd in zkit::cli::commands() {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page).unwrap();
        let path = dir.join(format!("{name}.1"));
        if update {
            std::fs::write(&path, &page).unwrap();
            continue;
        }
        let current = std::fs::read(&path).unwrap_or_default();
        assert!(
            current == page,
            "man/{name}.1 is stale: run `make man` and commit it"
        );
    }
}
