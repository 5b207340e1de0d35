//! Helpers shared by the streams test files.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

/// Compares `actual` with `tests/golden/{name}.txt`; `LOGBROOK_BLESS=1` rewrites the file first.
pub fn check_golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("LOGBROOK_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}
