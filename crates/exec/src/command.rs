//! The command line as the user sees it: the shell argv the agent's `cmd` runs in, its
//! rendering (`/bin/bash -lc 'echo hi'`) and the `commandActions` summary codex derives
//! from it (read / listFiles / search / unknown).

use std::path::{Path, PathBuf};

/// What one part of a command does, as shown in a `commandExecution` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandAction {
    /// Reads a file (`cat`, `sed -n 1,5p f`, `head`, `tail`, …).
    Read {
        /// The part of the command that reads.
        command: String,
        /// The file's short display name.
        name: String,
        /// The file; absolute after [`command_actions`].
        path: PathBuf,
    },
    /// Lists files (`ls`, `find`, `rg --files`, …).
    ListFiles {
        /// The part of the command that lists.
        command: String,
        /// The short display form of the listed directory, if named.
        path: Option<String>,
    },
    /// Searches (`grep`, `rg`, `find -name`, …).
    Search {
        /// The part of the command that searches.
        command: String,
        /// The pattern searched for.
        query: Option<String>,
        /// The short display form of the searched path, if named.
        path: Option<String>,
    },
    /// Anything else.
    Unknown {
        /// The command (or the whole script when it could not be split).
        command: String,
    },
}

/// The argv that runs `script` in `shell`: `[shell, "-lc", script]`, or `-c` without login.
pub fn shell_argv(shell: &str, login: bool, script: &str) -> Vec<String> {
    let flag = if login { "-lc" } else { "-c" };
    vec![shell.to_string(), flag.to_string(), script.to_string()]
}

/// The argv joined with POSIX shell quoting, as codex shows a command.
pub fn render_command(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str))
        .unwrap_or_else(|_| "<command included NUL byte>".to_string())
}

/// [`parse_command`] with each read path made absolute against `cwd`.
pub fn command_actions(argv: &[String], cwd: &Path) -> Vec<CommandAction> {
    parse_command(argv)
        .into_iter()
        .map(|action| match action {
            CommandAction::Read {
                command,
                name,
                path,
            } => CommandAction::Read {
                command,
                name,
                path: cwd.join(path),
            },
            other => other,
        })
        .collect()
}

/// Summarises a command argv as codex does; read paths are relative to the command's cwd
/// (after any `cd` in the script). Consecutive duplicates are collapsed.
pub fn parse_command(argv: &[String]) -> Vec<CommandAction> {
    let mut actions = match shell_script(argv) {
        Some(script) => parse_script(script),
        None => parse_tokens(argv),
    };
    actions.dedup();
    actions
}

/// The script of `bash|zsh|sh -c|-lc SCRIPT`.
fn shell_script(argv: &[String]) -> Option<&str> {
    let [shell, flag, script] = argv else {
        return None;
    };
    let name = Path::new(shell).file_name()?.to_str()?;
    let is_posix_shell = matches!(name, "bash" | "zsh" | "sh");
    (is_posix_shell && matches!(flag.as_str(), "-c" | "-lc")).then_some(script.as_str())
}

fn parse_script(script: &str) -> Vec<CommandAction> {
    let whole_script = || {
        vec![CommandAction::Unknown {
            command: script.to_string(),
        }]
    };
    let Some(commands) = split_word_only_script(script).filter(|c| !c.is_empty()) else {
        return whole_script();
    };
    let script_tokens = shlex::split(script).unwrap_or_else(|| vec![script.to_string()]);
    let had_multiple_commands = commands.len() > 1;
    let commands: Vec<Vec<String>> = commands
        .into_iter()
        .filter(|tokens| !is_small_formatting_command(tokens))
        .collect();
    if commands.is_empty() {
        return whole_script();
    }
    let mut actions = summarize_with_cd(&commands);
    if actions.len() > 1 {
        actions.retain(|a| !matches!(a, CommandAction::Unknown { command } if command == "true"));
        simplify(&mut actions);
    }
    if let [only] = actions.as_mut_slice() {
        let had_connectors = had_multiple_commands || script_tokens.iter().any(|t| is_connector(t));
        let joined_script = render_command(&script_tokens);
        match only {
            CommandAction::Read { command, .. } => {
                if !had_connectors {
                    *command = joined_script;
                } else if script_tokens.iter().any(|t| t == "|")
                    && script_tokens
                        .windows(2)
                        .any(|w| w[0] == "sed" && w[1] == "-n")
                {
                    *command = script.to_string();
                }
            }
            CommandAction::ListFiles { command, .. } | CommandAction::Search { command, .. } => {
                if !had_connectors {
                    *command = joined_script;
                }
            }
            CommandAction::Unknown { .. } => {}
        }
    }
    actions
}

fn parse_tokens(argv: &[String]) -> Vec<CommandAction> {
    let tokens: Vec<String> = match argv {
        [first, pipe, rest @ ..]
            if matches!(first.as_str(), "yes" | "y" | "no" | "n") && pipe == "|" =>
        {
            rest.to_vec()
        }
        _ => argv.to_vec(),
    };
    let parts: Vec<Vec<String>> = tokens
        .split(|t| is_connector(t))
        .filter(|part| !part.is_empty())
        .map(<[String]>::to_vec)
        .collect();
    let mut actions = summarize_with_cd(&parts);
    simplify(&mut actions);
    actions
}

fn is_connector(token: &str) -> bool {
    matches!(token, "&&" | "||" | "|" | ";")
}

/// Summarises each command, dropping `cd`s and resolving later read paths against them.
fn summarize_with_cd(commands: &[Vec<String>]) -> Vec<CommandAction> {
    let mut actions = Vec::with_capacity(commands.len());
    let mut cd_dir: Option<String> = None;
    for tokens in commands {
        if let Some((head, tail)) = tokens.split_first()
            && head == "cd"
        {
            if let Some(dir) = cd_target(tail) {
                cd_dir = Some(match &cd_dir {
                    Some(base) => join_paths(base, &dir),
                    None => dir,
                });
            }
            continue;
        }
        let mut action = summarize(tokens);
        if let (CommandAction::Read { path, .. }, Some(base)) = (&mut action, &cd_dir) {
            *path = PathBuf::from(join_paths(base, &path.to_string_lossy()));
        }
        actions.push(action);
    }
    actions
}

/// Repeatedly drops noise: a leading `echo`, a `cd` followed by something, `true`, and
/// `nl` with only flags.
fn simplify(actions: &mut Vec<CommandAction>) {
    let first_word = |action: &CommandAction| match action {
        CommandAction::Unknown { command } => {
            shlex::split(command).and_then(|t| t.into_iter().next())
        }
        _ => None,
    };
    while actions.len() > 1 {
        if first_word(&actions[0]).as_deref() == Some("echo") {
            actions.remove(0);
            continue;
        }
        if let Some(i) = actions
            .iter()
            .position(|a| first_word(a).as_deref() == Some("cd"))
            && i + 1 < actions.len()
        {
            actions.remove(i);
            continue;
        }
        if let Some(i) = actions
            .iter()
            .position(|a| matches!(a, CommandAction::Unknown { command } if command == "true"))
        {
            actions.remove(i);
            continue;
        }
        if let Some(i) = actions.iter().position(|a| match a {
            CommandAction::Unknown { command } => shlex::split(command).is_some_and(|t| {
                t.first().is_some_and(|w| w == "nl") && t[1..].iter().all(|w| w.starts_with('-'))
            }),
            _ => false,
        }) {
            actions.remove(i);
            continue;
        }
        break;
    }
}

/// Splits a script into the words of its commands when it is only plain commands joined
/// by `&&`, `||`, `;`, `|` or newlines: words, numbers and quoted strings without
/// expansions. Anything else (redirections, `$`, backticks, subshells, assignments,
/// control flow, comments, `&`) gives None, as codex's tree-sitter check does.
fn split_word_only_script(script: &str) -> Option<Vec<Vec<String>>> {
    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    // True after an operator that needs a command to follow (`&&`, `||`, `|`).
    let mut need_command = false;
    let mut chars = script.chars().peekable();

    fn end_command(
        commands: &mut Vec<Vec<String>>,
        words: &mut Vec<String>,
        required: bool,
    ) -> Option<()> {
        if words.is_empty() {
            return if required { None } else { Some(()) };
        }
        let first = &words[0];
        let reserved = matches!(
            first.as_str(),
            "if" | "then"
                | "else"
                | "elif"
                | "fi"
                | "for"
                | "while"
                | "until"
                | "do"
                | "done"
                | "case"
                | "esac"
                | "function"
                | "select"
                | "time"
                | "coproc"
                | "!"
                | "{"
                | "}"
                | "["
                | "[["
                | "]]"
        );
        let assignment = first.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if reserved || assignment {
            return None;
        }
        commands.push(std::mem::take(words));
        Some(())
    }

    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\n' | ';' | '&' | '|' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                match c {
                    '\n' => {
                        if !need_command {
                            end_command(&mut commands, &mut words, false)?;
                        }
                    }
                    ';' => {
                        if chars.peek() == Some(&';') {
                            return None;
                        }
                        end_command(&mut commands, &mut words, true)?;
                        need_command = false;
                    }
                    '&' => {
                        chars.next_if_eq(&'&')?;
                        end_command(&mut commands, &mut words, true)?;
                        need_command = true;
                    }
                    _ => {
                        if chars.peek() == Some(&'&') {
                            return None;
                        }
                        chars.next_if_eq(&'|');
                        end_command(&mut commands, &mut words, true)?;
                        need_command = true;
                    }
                }
            }
            '\'' => {
                in_word = true;
                need_command = false;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                need_command = false;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' => return None,
                        '\\' => {
                            // Kept verbatim: codex takes the string's source text.
                            word.push('\\');
                            word.push(chars.next()?);
                        }
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                let next = chars.next()?;
                if next == '\n' {
                    return None;
                }
                in_word = true;
                need_command = false;
                word.push('\\');
                word.push(next);
            }
            '#' if !in_word => return None,
            '$' | '`' | '(' | ')' | '<' | '>' | '{' | '}' => return None,
            other => {
                in_word = true;
                need_command = false;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if need_command {
        return None;
    }
    end_command(&mut commands, &mut words, false)?;
    Some(commands)
}

/// Shortens a path to its last meaningful component, skipping `build`, `dist`,
/// `node_modules` and `src` (`webview/src` → `webview`).
fn short_display_path(path: &str) -> String {
    let normalized = path.replace('\\', "/");
    let trimmed = normalized.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_string();
    }
    trimmed
        .rsplit('/')
        .find(|p| !p.is_empty() && !matches!(*p, "build" | "dist" | "node_modules" | "src"))
        .unwrap_or(trimmed)
        .to_string()
}

fn trim_at_connector(tokens: &[String]) -> &[String] {
    let end = tokens
        .iter()
        .position(|t| is_connector(t))
        .unwrap_or(tokens.len());
    &tokens[..end]
}

/// Arguments left after skipping the values of `flags_with_values` and `--x=y` flags;
/// everything after `--` is kept.
fn skip_flag_values<'a>(args: &'a [String], flags_with_values: &[&str]) -> Vec<&'a String> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.extend(iter);
            break;
        }
        if arg.starts_with("--") && arg.contains('=') {
            continue;
        }
        if flags_with_values.contains(&arg.as_str()) {
            iter.next();
            continue;
        }
        out.push(arg);
    }
    out
}

/// Operands that are not flags (a `--` ends flag parsing).
fn positional_operands<'a>(args: &'a [String], flags_with_values: &[&str]) -> Vec<&'a String> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.extend(iter);
            break;
        }
        if arg.starts_with("--") && arg.contains('=') {
            continue;
        }
        if flags_with_values.contains(&arg.as_str()) {
            iter.next();
            continue;
        }
        if !arg.starts_with('-') {
            out.push(arg);
        }
    }
    out
}

fn first_operand(args: &[String], flags_with_values: &[&str]) -> Option<String> {
    positional_operands(args, flags_with_values)
        .first()
        .map(|s| s.to_string())
}

fn single_operand(args: &[String], flags_with_values: &[&str]) -> Option<String> {
    match positional_operands(args, flags_with_values).as_slice() {
        [only] => Some(only.to_string()),
        _ => None,
    }
}

fn non_flags(candidates: Vec<&String>) -> Vec<&String> {
    candidates
        .into_iter()
        .filter(|a| !a.starts_with('-'))
        .collect()
}

fn cd_target(args: &[String]) -> Option<String> {
    let mut target = None;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            return args.get(i + 1).cloned();
        }
        if !arg.starts_with('-') {
            target = Some(arg.clone());
        }
    }
    target
}

fn join_paths(base: &str, relative: &str) -> String {
    if Path::new(relative).is_absolute() || base.is_empty() {
        return relative.to_string();
    }
    Path::new(base)
        .join(relative)
        .to_string_lossy()
        .into_owned()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

fn is_line_count(s: &str, allow_plus: bool) -> bool {
    let s = if allow_plus {
        s.strip_prefix('+').unwrap_or(s)
    } else {
        s
    };
    is_digits(s)
}

/// `sed -n` scripts of the form `N p` or `N,M p`.
fn is_sed_range(arg: &str) -> bool {
    let Some(range) = arg.strip_suffix('p') else {
        return false;
    };
    match range.split_once(',') {
        Some((a, b)) => is_digits(a) && is_digits(b),
        None => is_digits(range),
    }
}

fn sed_read_path(args: &[String]) -> Option<String> {
    let args = trim_at_connector(args);
    if !args.iter().any(|a| a == "-n") {
        return None;
    }
    let mut has_range = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-e" | "--expression" => {
                has_range |= args.get(i + 1).is_some_and(|a| is_sed_range(a));
                i += 2;
            }
            "-f" | "--file" => i += 2,
            _ => i += 1,
        }
    }
    has_range |= args.iter().any(|a| !a.starts_with('-') && is_sed_range(a));
    if !has_range {
        return None;
    }
    let operands = non_flags(skip_flag_values(
        args,
        &["-e", "-f", "--expression", "--file"],
    ));
    match operands.as_slice() {
        [] => None,
        [first, rest @ ..] if is_sed_range(first) => rest.first().map(|s| s.to_string()),
        [first, ..] => Some(first.to_string()),
    }
}

fn awk_data_file(args: &[String]) -> Option<String> {
    let args = trim_at_connector(args);
    let has_script_file = args.iter().any(|a| a == "-f" || a == "--file");
    let operands = non_flags(skip_flag_values(
        args,
        &["-F", "-v", "-f", "--field-separator", "--assign", "--file"],
    ));
    if has_script_file {
        operands.first().map(|s| s.to_string())
    } else {
        operands.get(1).map(|s| s.to_string())
    }
}

fn xargs_is_mutating(tokens: &[String]) -> bool {
    let mut i = 1;
    let sub: &[String] = loop {
        let Some(token) = tokens.get(i) else {
            return false;
        };
        if token == "--" {
            break &tokens[i + 1..];
        }
        if !token.starts_with('-') {
            break &tokens[i..];
        }
        let takes_value = matches!(
            token.as_str(),
            "-E" | "-e" | "-I" | "-L" | "-n" | "-P" | "-s"
        );
        i += if takes_value { 2 } else { 1 };
    };
    let Some((head, tail)) = sub.split_first() else {
        return false;
    };
    let in_place = || {
        tail.iter()
            .any(|t| t.starts_with("-i") || t.starts_with("-pi"))
    };
    match head.as_str() {
        "perl" | "ruby" => in_place(),
        "sed" => in_place() || tail.iter().any(|t| t == "--in-place"),
        "rg" => tail.iter().any(|t| t == "--replace"),
        _ => false,
    }
}

/// Pipeline helpers (`wc`, `head -n 40`, `sed -n 1p` without a file, …) that say nothing
/// about what the command is for.
fn is_small_formatting_command(tokens: &[String]) -> bool {
    let Some(cmd) = tokens.first() else {
        return false;
    };
    match cmd.as_str() {
        "wc" | "tr" | "cut" | "sort" | "uniq" | "tee" | "column" | "yes" | "printf" => true,
        "xargs" => !xargs_is_mutating(tokens),
        "awk" => awk_data_file(&tokens[1..]).is_none(),
        "head" => match tokens {
            [_] => true,
            [_, arg] => arg.starts_with('-'),
            [_, flag, count] => {
                (flag == "-n" || flag == "-c") && count.chars().all(|c| c.is_ascii_digit())
            }
            _ => false,
        },
        "tail" => match tokens {
            [_] => true,
            [_, arg] => arg.starts_with('-'),
            [_, flag, count] => (flag == "-n" || flag == "-c") && is_line_count(count, true),
            _ => false,
        },
        "sed" => sed_read_path(&tokens[1..]).is_none(),
        _ => false,
    }
}

fn read(command: String, path: String) -> CommandAction {
    CommandAction::Read {
        command,
        name: short_display_path(&path),
        path: PathBuf::from(path),
    }
}

fn read_or_unknown(command: String, path: Option<String>) -> CommandAction {
    match path {
        Some(path) => read(command, path),
        None => CommandAction::Unknown { command },
    }
}

fn search_or_list(command: String, query: Option<String>, path: Option<String>) -> CommandAction {
    if query.is_some() {
        CommandAction::Search {
            command,
            query,
            path,
        }
    } else {
        CommandAction::ListFiles { command, path }
    }
}

fn list_files(command: String, args: &[String], flags_with_values: &[&str]) -> CommandAction {
    CommandAction::ListFiles {
        command,
        path: first_operand(args, flags_with_values).map(|p| short_display_path(&p)),
    }
}

fn parse_grep_like(command: String, args: &[String]) -> CommandAction {
    let args = trim_at_connector(args);
    let mut operands: Vec<&String> = Vec::new();
    let mut pattern: Option<String> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            operands.extend(iter.by_ref());
            break;
        }
        if let Some(value) = arg
            .strip_prefix("--regexp=")
            .or_else(|| arg.strip_prefix("--file="))
        {
            pattern.get_or_insert_with(|| value.to_string());
            continue;
        }
        match arg.as_str() {
            "-e" | "--regexp" | "-f" | "--file" => {
                if let Some(value) = iter.next() {
                    pattern.get_or_insert_with(|| value.clone());
                }
                continue;
            }
            "-m" | "--max-count" | "-C" | "--context" | "-A" | "--after-context" | "-B"
            | "--before-context" => {
                iter.next();
                continue;
            }
            _ => {}
        }
        if let Some(value) = arg
            .strip_prefix("-e")
            .or_else(|| arg.strip_prefix("-f"))
            .filter(|v| !v.is_empty())
            && pattern.is_none()
        {
            pattern = Some(value.to_string());
            continue;
        }
        if !arg.starts_with('-') {
            operands.push(arg);
        }
    }
    let path_index = usize::from(pattern.is_none());
    let query = pattern.or_else(|| operands.first().map(|s| s.to_string()));
    CommandAction::Search {
        command,
        query,
        path: operands.get(path_index).map(|s| short_display_path(s)),
    }
}

fn parse_fd(args: &[String]) -> (Option<String>, Option<String>) {
    let args = trim_at_connector(args);
    let mut search_paths = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--search-path" {
            if let Some(path) = args.get(i + 1) {
                search_paths.push(path.clone());
            }
            i += 2;
            continue;
        }
        if let Some(path) = args[i].strip_prefix("--search-path=") {
            search_paths.push(path.to_string());
        }
        i += 1;
    }
    let operands = non_flags(skip_flag_values(
        args,
        &[
            "-t",
            "--type",
            "-e",
            "--extension",
            "-E",
            "--exclude",
            "--search-path",
        ],
    ));
    let (query, path) = match operands.as_slice() {
        [one] if is_pathish(one) => (None, Some(short_display_path(one))),
        [one] => (Some(one.to_string()), None),
        [query, path, ..] => (Some(query.to_string()), Some(short_display_path(path))),
        [] => (None, None),
    };
    let path = path.or_else(|| search_paths.first().map(|p| short_display_path(p)));
    (query, path)
}

fn is_pathish(s: &str) -> bool {
    s == "." || s == ".." || s.contains('/') || s.contains('\\')
}

fn parse_find(args: &[String]) -> (Option<String>, Option<String>) {
    let args = trim_at_connector(args);
    let candidates = skip_flag_values(
        args,
        &[
            "-type",
            "-name",
            "-iname",
            "-path",
            "-ipath",
            "-regex",
            "-iregex",
            "-perm",
            "-user",
            "-group",
            "-size",
            "-maxdepth",
            "-mindepth",
            "-newer",
            "-exec",
            "-execdir",
            "-ok",
            "-okdir",
            "-printf",
        ],
    );
    let path = candidates
        .into_iter()
        .find(|a| !a.starts_with('-') && !matches!(a.as_str(), "!" | "(" | ")"))
        .map(|a| short_display_path(a))
        .unwrap_or_else(|| ".".to_string());
    let query = args
        .iter()
        .position(|a| matches!(a.as_str(), "-name" | "-iname" | "-path" | "-regex"))
        .and_then(|i| args.get(i + 1).cloned());
    (query, Some(path))
}

/// `head`/`tail` with `-n N` (or `-nN`; tail also `+N`) and a file, or just a file.
fn head_tail_path(args: &[String], allow_plus: bool) -> Option<String> {
    let valid_count = match args.split_first() {
        Some((first, rest)) if first == "-n" => {
            rest.first().is_some_and(|n| is_line_count(n, allow_plus))
        }
        Some((first, _)) => first.strip_prefix("-n").is_some_and(|n| {
            if allow_plus {
                is_line_count(n, true)
            } else {
                n.chars().all(|c| c.is_ascii_digit())
            }
        }),
        None => false,
    };
    if valid_count {
        let skip = if args[0] == "-n" && args.get(1).is_some_and(|n| is_line_count(n, allow_plus)) {
            2
        } else {
            0
        };
        if let Some(path) = args[skip..].iter().find(|a| !a.starts_with('-')) {
            return Some(path.clone());
        }
    }
    match args {
        [path] if !path.starts_with('-') => Some(path.clone()),
        _ => None,
    }
}

fn summarize(tokens: &[String]) -> CommandAction {
    let command = render_command(tokens);
    let Some((head, tail)) = tokens.split_first() else {
        return CommandAction::Unknown { command };
    };
    match head.as_str() {
        "ls" => list_files(
            command,
            tail,
            &[
                "-I",
                "-w",
                "--block-size",
                "--format",
                "--time-style",
                "--color",
                "--quoting-style",
            ],
        ),
        "eza" | "exa" => list_files(
            command,
            tail,
            &[
                "-I",
                "--ignore-glob",
                "--color",
                "--sort",
                "--time-style",
                "--time",
            ],
        ),
        "tree" => list_files(
            command,
            tail,
            &["-L", "-P", "-I", "--charset", "--filelimit", "--sort"],
        ),
        "du" => list_files(
            command,
            tail,
            &[
                "-d",
                "--max-depth",
                "-B",
                "--block-size",
                "--exclude",
                "--time-style",
            ],
        ),
        "rg" | "rga" | "ripgrep-all" => {
            let args = trim_at_connector(tail);
            let operands = non_flags(skip_flag_values(
                args,
                &[
                    "-g",
                    "--glob",
                    "--iglob",
                    "-t",
                    "--type",
                    "--type-add",
                    "--type-not",
                    "-m",
                    "--max-count",
                    "-A",
                    "-B",
                    "-C",
                    "--context",
                    "--max-depth",
                ],
            ));
            if args.iter().any(|a| a == "--files") {
                CommandAction::ListFiles {
                    command,
                    path: operands.first().map(|s| short_display_path(s)),
                }
            } else {
                CommandAction::Search {
                    command,
                    query: operands.first().map(|s| s.to_string()),
                    path: operands.get(1).map(|s| short_display_path(s)),
                }
            }
        }
        "git" => match tail.split_first() {
            Some((sub, args)) if sub == "grep" => parse_grep_like(command, args),
            Some((sub, args)) if sub == "ls-files" => list_files(
                command,
                args,
                &["--exclude", "--exclude-from", "--pathspec-from-file"],
            ),
            _ => CommandAction::Unknown { command },
        },
        "fd" => {
            let (query, path) = parse_fd(tail);
            search_or_list(command, query, path)
        }
        "find" => {
            let (query, path) = parse_find(tail);
            search_or_list(command, query, path)
        }
        "grep" | "egrep" | "fgrep" => parse_grep_like(command, tail),
        "ag" | "ack" | "pt" => {
            let operands = non_flags(skip_flag_values(
                trim_at_connector(tail),
                &[
                    "-G",
                    "-g",
                    "--file-search-regex",
                    "--ignore-dir",
                    "--ignore-file",
                    "--path-to-ignore",
                ],
            ));
            CommandAction::Search {
                command,
                query: operands.first().map(|s| s.to_string()),
                path: operands.get(1).map(|s| short_display_path(s)),
            }
        }
        "cat" | "more" => read_or_unknown(command, single_operand(tail, &[])),
        "bat" | "batcat" => read_or_unknown(
            command,
            single_operand(
                tail,
                &[
                    "--theme",
                    "--language",
                    "--style",
                    "--terminal-width",
                    "--tabs",
                    "--line-range",
                    "--map-syntax",
                ],
            ),
        ),
        "less" => read_or_unknown(
            command,
            single_operand(
                tail,
                &[
                    "-p",
                    "-P",
                    "-x",
                    "-y",
                    "-z",
                    "-j",
                    "--pattern",
                    "--prompt",
                    "--tabs",
                    "--shift",
                    "--jump-target",
                ],
            ),
        ),
        "head" => read_or_unknown(command, head_tail_path(tail, false)),
        "tail" => read_or_unknown(command, head_tail_path(tail, true)),
        "awk" => read_or_unknown(command, awk_data_file(tail)),
        "nl" => read_or_unknown(
            command,
            skip_flag_values(tail, &["-s", "-w", "-v", "-i", "-b"])
                .into_iter()
                .find(|a| !a.starts_with('-'))
                .cloned(),
        ),
        "sed" => read_or_unknown(command, sed_read_path(tail)),
        name if is_python(name) => {
            if python_walks_files(tail) {
                CommandAction::ListFiles {
                    command,
                    path: None,
                }
            } else {
                CommandAction::Unknown { command }
            }
        }
        _ => CommandAction::Unknown { command },
    }
}

fn is_python(name: &str) -> bool {
    matches!(name, "python" | "python2" | "python3")
        || name.starts_with("python2.")
        || name.starts_with("python3.")
}

fn python_walks_files(args: &[String]) -> bool {
    let args = trim_at_connector(args);
    let Some(script) = args
        .iter()
        .position(|a| a == "-c")
        .and_then(|i| args.get(i + 1))
    else {
        return false;
    };
    [
        "os.walk",
        "os.listdir",
        "os.scandir",
        "glob.glob",
        "glob.iglob",
        "pathlib.Path",
        ".rglob(",
    ]
    .iter()
    .any(|needle| script.contains(needle))
}
