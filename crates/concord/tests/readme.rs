//! The repository's README shows the embedded API with the example of this
//! crate's README, which is compiled as a doc test (`src/lib.rs`): the two
//! must not drift apart. (In a published copy of the crate there is no
//! repository README; then there is nothing to compare.)

/// The ```rust code blocks of a Markdown file.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.starts_with("```rust") => current = Some(String::new()),
            Some(_) if line == "```" => blocks.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn the_repository_readme_shows_the_tested_example() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let crate_readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    let Ok(repo_readme) = std::fs::read_to_string(crate_dir.join("../../README.md")) else {
        return; // a published copy of the crate
    };
    let tested = rust_blocks(&crate_readme);
    assert_eq!(tested.len(), 1, "the crate README has one Rust example");
    assert!(
        rust_blocks(&repo_readme).contains(&tested[0]),
        "README.md's embedded API example differs from crates/concord/README.md's (the tested one)"
    );
}
