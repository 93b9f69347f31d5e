//! `commandActions` parsing and command rendering, as a table of codex's cases.

use std::path::{Path, PathBuf};

use tether_exec::{CommandAction, command_actions, parse_command, render_command, shell_argv};

fn bash(script: &str) -> Vec<String> {
    shell_argv("bash", true, script)
}

fn split(line: &str) -> Vec<String> {
    shlex::split(line).unwrap()
}

fn read(command: &str, name: &str, path: &str) -> CommandAction {
    CommandAction::Read {
        command: command.into(),
        name: name.into(),
        path: PathBuf::from(path),
    }
}

fn list(command: &str, path: Option<&str>) -> CommandAction {
    CommandAction::ListFiles {
        command: command.into(),
        path: path.map(Into::into),
    }
}

fn search(command: &str, query: Option<&str>, path: Option<&str>) -> CommandAction {
    CommandAction::Search {
        command: command.into(),
        query: query.map(Into::into),
        path: path.map(Into::into),
    }
}

fn unknown(command: &str) -> CommandAction {
    CommandAction::Unknown {
        command: command.into(),
    }
}

#[test]
fn command_actions_table() {
    let cases: Vec<(Vec<String>, Vec<CommandAction>)> = vec![
        (split("git status"), vec![unknown("git status")]),
        (bash("git status | wc -l"), vec![unknown("git status")]),
        (bash("echo foo > bar"), vec![unknown("echo foo > bar")]),
        (
            bash("cat webview/README.md"),
            vec![read(
                "cat webview/README.md",
                "README.md",
                "webview/README.md",
            )],
        ),
        (
            shell_argv("/bin/zsh", true, "cat README.md"),
            vec![read("cat README.md", "README.md", "README.md")],
        ),
        (
            bash("sed -n '2000,2200p' tui/src/history_cell.rs"),
            vec![read(
                "sed -n '2000,2200p' tui/src/history_cell.rs",
                "history_cell.rs",
                "tui/src/history_cell.rs",
            )],
        ),
        (
            bash("head -n 50 Cargo.toml"),
            vec![read("head -n 50 Cargo.toml", "Cargo.toml", "Cargo.toml")],
        ),
        (
            bash("head -n50 Cargo.toml"),
            vec![read("head -n50 Cargo.toml", "Cargo.toml", "Cargo.toml")],
        ),
        (
            bash("tail -n +522 README.md"),
            vec![read("tail -n +522 README.md", "README.md", "README.md")],
        ),
        (
            bash("tail -n+10 README.md"),
            vec![read("tail -n+10 README.md", "README.md", "README.md")],
        ),
        (
            bash("cat tui/Cargo.toml | sed -n '1,200p'"),
            vec![read(
                "cat tui/Cargo.toml | sed -n '1,200p'",
                "Cargo.toml",
                "tui/Cargo.toml",
            )],
        ),
        (
            bash("nl -ba core/src/parse_command.rs | sed -n '1200,1720p'"),
            vec![read(
                "nl -ba core/src/parse_command.rs | sed -n '1200,1720p'",
                "parse_command.rs",
                "core/src/parse_command.rs",
            )],
        ),
        (
            bash("awk '{print $1}' Cargo.toml"),
            vec![read(
                "awk '{print $1}' Cargo.toml",
                "Cargo.toml",
                "Cargo.toml",
            )],
        ),
        (
            bash("less -p TODO README.md"),
            vec![read("less -p TODO README.md", "README.md", "README.md")],
        ),
        (
            split("cd foo && cat foo.txt"),
            vec![read("cat foo.txt", "foo.txt", "foo/foo.txt")],
        ),
        (
            bash("cd foo && cat foo.txt"),
            vec![read("cat foo.txt", "foo.txt", "foo/foo.txt")],
        ),
        (
            split("cd -- -weird && cat foo.txt"),
            vec![read("cat foo.txt", "foo.txt", "-weird/foo.txt")],
        ),
        (bash("cd foo && bar"), vec![unknown("bar")]),
        (
            bash(
                "printf \"\\n===== ansi-escape/Cargo.toml =====\\n\"; cat -- ansi-escape/Cargo.toml",
            ),
            vec![read(
                "cat -- ansi-escape/Cargo.toml",
                "Cargo.toml",
                "ansi-escape/Cargo.toml",
            )],
        ),
        (bash("ls -la | sed -n '1,120p'"), vec![list("ls -la", None)]),
        (split("ls /"), vec![list("ls /", Some("/"))]),
        (
            split("ls --time-style=long-iso ./dist"),
            vec![list("ls '--time-style=long-iso' ./dist", Some("."))],
        ),
        (
            split("ls -I '*.test.js'"),
            vec![list("ls -I '*.test.js'", None)],
        ),
        (
            split("tree -L 2 src"),
            vec![list("tree -L 2 src", Some("src"))],
        ),
        (
            split("eza --color=always src"),
            vec![list("eza '--color=always' src", Some("src"))],
        ),
        (
            bash("rg --files webview/src | sed -n"),
            vec![list("rg --files webview/src", Some("webview"))],
        ),
        (bash("yes | rg --files"), vec![list("rg --files", None)]),
        (split("rg --files | nl -ba"), vec![list("rg --files", None)]),
        (split("true && rg --files"), vec![list("rg --files", None)]),
        (bash("rg --files || true"), vec![list("rg --files", None)]),
        (
            bash("rg -n \"navigate-to-route\" -S"),
            vec![search(
                "rg -n navigate-to-route -S",
                Some("navigate-to-route"),
                None,
            )],
        ),
        (
            bash("rg -n \"BUG|FIXME|TODO|XXX|HACK\" -S | head -n 200"),
            vec![search(
                "rg -n 'BUG|FIXME|TODO|XXX|HACK' -S",
                Some("BUG|FIXME|TODO|XXX|HACK"),
                None,
            )],
        ),
        (
            bash("cd /Users/pakrym/code/codex && rg -n \"codex_api\" codex-rs -S | head -n 50"),
            vec![search(
                "rg -n codex_api codex-rs -S",
                Some("codex_api"),
                Some("codex-rs"),
            )],
        ),
        (
            split("grep -R CODEX_SANDBOX_ENV_VAR -n core/src/spawn.rs"),
            vec![search(
                "grep -R CODEX_SANDBOX_ENV_VAR -n core/src/spawn.rs",
                Some("CODEX_SANDBOX_ENV_VAR"),
                Some("spawn.rs"),
            )],
        ),
        (
            split("grep --regexp=TODO -n src"),
            vec![search(
                "grep '--regexp=TODO' -n src",
                Some("TODO"),
                Some("src"),
            )],
        ),
        (
            split("grep -R src/main.rs -n ."),
            vec![search(
                "grep -R src/main.rs -n .",
                Some("src/main.rs"),
                Some("."),
            )],
        ),
        (
            split("git grep TODO src"),
            vec![search("git grep TODO src", Some("TODO"), Some("src"))],
        ),
        (
            split("git ls-files --exclude target src"),
            vec![list("git ls-files --exclude target src", Some("src"))],
        ),
        (
            split("fd main src"),
            vec![search("fd main src", Some("main"), Some("src"))],
        ),
        (
            split("fd -t f src/"),
            vec![list("fd -t f src/", Some("src"))],
        ),
        (
            split("find . -name '*.rs'"),
            vec![search("find . -name '*.rs'", Some("*.rs"), Some("."))],
        ),
        (
            split("find src -type f"),
            vec![list("find src -type f", Some("src"))],
        ),
        (split("find"), vec![list("find", Some("."))]),
        (
            split("rg foo ; echo done"),
            vec![search("rg foo", Some("foo"), None), unknown("echo done")],
        ),
        (
            split("rg foo || echo done"),
            vec![search("rg foo", Some("foo"), None), unknown("echo done")],
        ),
        (
            bash(
                "rg --version && node -v && pnpm -v && rg --files | wc -l && rg --files | head -n 40",
            ),
            vec![
                search("rg --version", None, None),
                unknown("node -v"),
                unknown("pnpm -v"),
                list("rg --files", None),
            ],
        ),
        (
            bash(
                "rg -l QkBindingController presentation/src/main/java | xargs perl -pi -e 's/QkBindingController/QkController/g'",
            ),
            vec![
                search(
                    "rg -l QkBindingController presentation/src/main/java",
                    Some("QkBindingController"),
                    Some("java"),
                ),
                unknown("xargs perl -pi -e s/QkBindingController/QkController/g"),
            ],
        ),
        (
            bash("python -c \"import os; print(os.listdir('.'))\""),
            vec![list(
                "python -c \"import os; print(os.listdir('.'))\"",
                None,
            )],
        ),
        (
            bash("python -c \"print('hello')\""),
            vec![unknown("python -c \"print('hello')\"")],
        ),
        (bash("echo $HOME"), vec![unknown("echo $HOME")]),
        (bash("ls && (pwd)"), vec![unknown("ls && (pwd)")]),
        (bash("FOO=bar ls"), vec![unknown("FOO=bar ls")]),
        (bash("ls & pwd"), vec![unknown("ls & pwd")]),
    ];
    for (argv, expected) in cases {
        assert_eq!(parse_command(&argv), expected, "argv {argv:?}");
    }
}

#[test]
fn mixed_sequence_keeps_execution_order() {
    let script = "pwd; ls -la; rg --files -g '!target' | wc -l; rg -n '^\\[workspace\\]' -n Cargo.toml || true; rg -n '^\\[package\\]' -n */Cargo.toml || true; cargo --version; rustc --version; cargo clippy --workspace --all-targets --all-features -q";
    assert_eq!(
        parse_command(&bash(script)),
        vec![
            unknown("pwd"),
            list("ls -la", None),
            list("rg --files -g '!target'", None),
            search(
                &render_command(&split(r"rg -n '^\[workspace\]' -n Cargo.toml")),
                Some("^\\[workspace\\]"),
                Some("Cargo.toml")
            ),
            search(
                &render_command(&split(r"rg -n '^\[package\]' -n */Cargo.toml")),
                Some("^\\[package\\]"),
                Some("Cargo.toml")
            ),
            unknown("cargo --version"),
            unknown("rustc --version"),
            unknown("cargo clippy --workspace --all-targets --all-features -q"),
        ]
    );
}

#[test]
fn read_paths_are_made_absolute_against_the_cwd() {
    let cwd = Path::new("/work/project");
    assert_eq!(
        command_actions(&bash("cd /tmp && ls && sed -n 1,5p f.txt"), cwd),
        vec![
            list("ls", None),
            read("sed -n '1,5p' f.txt", "f.txt", "/tmp/f.txt")
        ]
    );
    assert_eq!(
        command_actions(&bash("cat src/lib.rs"), cwd),
        vec![read("cat src/lib.rs", "lib.rs", "/work/project/src/lib.rs")]
    );
}

#[test]
fn command_lines_render_with_shell_quoting() {
    assert_eq!(
        render_command(&shell_argv("/bin/bash", true, "echo hi")),
        "/bin/bash -lc 'echo hi'"
    );
    assert_eq!(
        render_command(&shell_argv("/bin/bash", false, "ls")),
        "/bin/bash -c ls"
    );
    assert_eq!(
        render_command(&shell_argv("/bin/bash", true, "echo 'it''s'")),
        "/bin/bash -lc \"echo 'it''s'\""
    );
    assert_eq!(
        render_command(&["a\0b".to_string()]),
        "<command included NUL byte>"
    );
}
