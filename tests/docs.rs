//! Documentation stays in step with the code: every limit in `src/limits.rs` is
//! listed in docs/operations.md, and the README still starts with the two commands.
//! Method: read the files as text.

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

#[test]
fn every_limit_is_documented_in_operations_md() {
    let limits = read("src/limits.rs");
    let operations = read("docs/operations.md");
    let names: Vec<&str> = limits
        .lines()
        .filter_map(|line| line.strip_prefix("pub const "))
        .filter_map(|rest| rest.split(':').next())
        .collect();
    assert!(names.len() > 20, "found only {} constants", names.len());
    let missing: Vec<_> = names
        .iter()
        .filter(|name| !operations.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "limits missing from docs/operations.md: {missing:?}"
    );
}

#[test]
fn the_readme_starts_with_the_run_and_test_commands() {
    let readme = read("README.md");
    let head: String = readme.lines().take(20).collect::<Vec<_>>().join("\n");
    assert!(
        head.contains("server --dev"),
        "the first lines must show how to start cairn"
    );
    assert!(
        head.contains("cargo test --workspace"),
        "the first lines must show how to run the tests"
    );
}
