//! Structured logs on stderr (tracing), with the level from a flag or an environment variable.

/// Set up logging: `level` (a `--log-level` flag) wins, then `$env`, then `default`. Values
/// are tracing filters: `error`, `warn`, `info`, `debug`, `trace`, or `zkit=debug,fuser=info`.
pub fn init(level: Option<&str>, env: &str, default: &str) {
    use tracing_subscriber::EnvFilter;
    let spec = level
        .map(str::to_owned)
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_owned());
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person watching; a background daemon's stderr becomes its log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // Its default reports a failed write with eprintln!, which panics when stderr is full.
        .log_internal_errors(false)
        .try_init();
}
