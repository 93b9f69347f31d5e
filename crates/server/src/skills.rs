//! `skills/list`: the `SKILL.md` files of the repository, the user, the bundled set and the
//! machine, where codex looks for them, with name and description from each file's YAML front
//! matter. A file that cannot be used becomes an entry of `errors`, never a failed request.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tether_protocol::{
    SkillErrorInfo, SkillMetadata, SkillScope, SkillsListEntry, SkillsListParams,
    SkillsListResponse,
};

const SKILL_FILE: &str = "SKILL.md";
/// How deep below a root skill folders are looked for.
const MAX_SCAN_DEPTH: usize = 6;
/// How many folders of one root are looked at, at most.
const MAX_DIRS_PER_ROOT: usize = 2000;
const MAX_NAME_LEN: usize = 64;
const MAX_DESCRIPTION_LEN: usize = 1024;

/// Where skills live outside the repository.
#[derive(Clone, Debug)]
pub struct SkillHomes {
    /// `$CODEX_HOME`: user skills in `skills/`, bundled ones in `skills/.system/`.
    pub codex_home: PathBuf,
    /// The user's home: user skills in `.agents/skills/`.
    pub user_home: Option<PathBuf>,
    /// The machine's skills (codex: `/etc/codex/skills`).
    pub admin_dir: PathBuf,
}

/// `skills/list`: one entry per `cwds` member (the session's `default_cwd` when empty; relative
/// ones are taken from it).
pub fn list_skills(
    params: &SkillsListParams,
    homes: &SkillHomes,
    default_cwd: &Path,
) -> SkillsListResponse {
    let cwds: Vec<PathBuf> = if params.cwds.is_empty() {
        vec![default_cwd.to_owned()]
    } else {
        params.cwds.iter().map(|c| default_cwd.join(c)).collect()
    };
    SkillsListResponse {
        data: cwds.into_iter().map(|cwd| list_for(&cwd, homes)).collect(),
    }
}

fn list_for(cwd: &Path, homes: &SkillHomes) -> SkillsListEntry {
    let mut skills = Vec::new();
    let mut errors = Vec::new();
    for (root, scope) in roots(cwd, homes) {
        for file in skill_files(&root) {
            match parse_skill_file(&file) {
                Ok((name, description, short_description)) => skills.push(SkillMetadata {
                    name,
                    description,
                    short_description,
                    interface: None,
                    path: file.display().to_string(),
                    scope,
                    enabled: true,
                    plugin_id: None,
                }),
                Err(message) => errors.push(SkillErrorInfo {
                    path: file.display().to_string(),
                    message,
                }),
            }
        }
    }
    // The first of a name wins: roots come highest priority first.
    let mut seen = HashSet::new();
    skills.retain(|skill| seen.insert(skill.name.clone()));
    skills.sort_by(|a, b| a.scope.cmp(&b.scope).then_with(|| a.name.cmp(&b.name)));
    SkillsListEntry {
        cwd: cwd.display().to_string(),
        skills,
        errors,
    }
}

/// Skill roots, highest priority first.
fn roots(cwd: &Path, homes: &SkillHomes) -> Vec<(PathBuf, SkillScope)> {
    let mut roots = Vec::new();
    let project_root = cwd
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(cwd);
    for dir in cwd.ancestors() {
        roots.push((dir.join(".codex").join("skills"), SkillScope::Repo));
        roots.push((dir.join(".agents").join("skills"), SkillScope::Repo));
        if dir == project_root {
            break;
        }
    }
    roots.push((homes.codex_home.join("skills"), SkillScope::User));
    if let Some(home) = &homes.user_home {
        roots.push((home.join(".agents").join("skills"), SkillScope::User));
    }
    roots.push((
        homes.codex_home.join("skills").join(".system"),
        SkillScope::System,
    ));
    roots.push((homes.admin_dir.clone(), SkillScope::Admin));
    let mut seen = HashSet::new();
    roots.retain(|(path, _)| seen.insert(path.clone()));
    roots
}

/// The `SKILL.md` files in folders below `root` (hidden folders skipped), sorted.
fn skill_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut queue = vec![(root.to_owned(), 0)];
    let mut visited = 0;
    while let Some((dir, depth)) = queue.pop() {
        visited += 1;
        if visited > MAX_DIRS_PER_ROOT {
            tracing::warn!(root = %root.display(), "stopped scanning skills after {MAX_DIRS_PER_ROOT} folders");
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == SKILL_FILE && path.is_file() && depth > 0 {
                files.push(path);
            } else if path.is_dir()
                && !name.to_string_lossy().starts_with('.')
                && depth < MAX_SCAN_DEPTH
            {
                queue.push((path, depth + 1));
            }
        }
    }
    files.sort();
    files
}

/// Name, description and legacy short description of one `SKILL.md`, or why it is unusable.
fn parse_skill_file(path: &Path) -> Result<(String, String, Option<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read: {err}"))?;
    let front_matter = front_matter(&text).ok_or("missing YAML frontmatter delimited by ---")?;
    let fields = parse_front_matter(front_matter)?;
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _, _)| k == key && !k.is_empty())
            .map(|(_, v, _)| v.trim().to_owned())
    };
    let name = field("name")
        .filter(|n| !n.is_empty())
        .ok_or("missing field `name`")?;
    let description = field("description")
        .filter(|d| !d.is_empty())
        .ok_or("missing field `description`")?;
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!(
            "invalid name: exceeds maximum length of {MAX_NAME_LEN} characters"
        ));
    }
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(format!(
            "invalid description: exceeds maximum length of {MAX_DESCRIPTION_LEN} characters"
        ));
    }
    let short_description = fields
        .iter()
        .find(|(k, _, parent)| k == "short-description" && parent.as_deref() == Some("metadata"))
        .map(|(_, v, _)| v.trim().to_owned());
    Ok((name, description, short_description))
}

fn front_matter(text: &str) -> Option<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    if lines.next()?.trim_end() != "---" {
        return None;
    }
    let start = text.find('\n')? + 1;
    let mut offset = start;
    for line in lines {
        if line.trim_end() == "---" {
            return Some(&text[start..offset]);
        }
        offset += line.len();
    }
    None
}

/// A small YAML subset, enough for skill front matter: `key: scalar` pairs (plain, quoted, or
/// `|`/`>` block scalars) at the top level and one level of nested mappings. Returns
/// `(key, value, parent key)`.
fn parse_front_matter(text: &str) -> Result<Vec<(String, String, Option<String>)>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut fields = Vec::new();
    let mut parent: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let content = line.trim_end();
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        if indent == 0 {
            parent = None;
        } else if parent.is_none() {
            return Err(format!(
                "invalid YAML frontmatter: unexpected indentation: {content:?}"
            ));
        }
        let (key, raw) = content.trim_start().split_once(':').ok_or_else(|| {
            format!("invalid YAML frontmatter: expected `key: value`: {content:?}")
        })?;
        let key = unquote(key.trim())?;
        let raw = raw.trim();
        let value = if raw.is_empty() && indent == 0 {
            parent = Some(key.clone());
            continue;
        } else if let Some(style) = raw.strip_prefix(['|', '>']).map(|_| raw.starts_with('>')) {
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            block.join(if style { " " } else { "\n" })
        } else {
            scalar(raw)?
        };
        fields.push((key, value, if indent == 0 { None } else { parent.clone() }));
    }
    Ok(fields)
}

fn scalar(raw: &str) -> Result<String, String> {
    if raw.starts_with('"') || raw.starts_with('\'') {
        return unquote(raw);
    }
    let plain = match raw.find(" #") {
        Some(at) => &raw[..at],
        None => raw,
    };
    Ok(plain.trim().to_owned())
}

fn unquote(raw: &str) -> Result<String, String> {
    let unterminated = || format!("invalid YAML frontmatter: unterminated quote: {raw}");
    if let Some(body) = raw.strip_prefix('\'') {
        let end = body.rfind('\'').ok_or_else(unterminated)?;
        return Ok(body[..end].replace("''", "'"));
    }
    if let Some(body) = raw.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => return Err(unterminated()),
                },
                other => out.push(other),
            }
        }
        return Err(unterminated());
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn skill(name: &str, description: &str) -> String {
        format!("---\nname: {name}\ndescription: {description}\n---\n\n# Body\n")
    }

    #[test]
    fn finds_skills_in_every_root_in_priority_order() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let cwd = repo.join("sub");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let homes = SkillHomes {
            codex_home: tmp.path().join("codex-home"),
            user_home: Some(tmp.path().join("home")),
            admin_dir: tmp.path().join("etc-codex-skills"),
        };
        write(
            &repo.join(".codex/skills/deploy/SKILL.md"),
            &skill("deploy", "Ship it"),
        );
        write(
            &cwd.join(".agents/skills/lint/SKILL.md"),
            &skill("lint", "Lint code"),
        );
        write(
            &homes.codex_home.join("skills/notes/SKILL.md"),
            "---\nname: \"notes\"\ndescription: >\n  Keep notes\n  tidy\nmetadata:\n  short-description: 'Notes'\n---\n",
        );
        write(
            &homes.codex_home.join("skills/deploy/SKILL.md"),
            &skill("deploy", "Shadowed"),
        );
        write(
            &homes
                .user_home
                .as_ref()
                .unwrap()
                .join(".agents/skills/a/b/deep/SKILL.md"),
            &skill("deep", "Nested # not a comment? yes it is"),
        );
        write(
            &homes.codex_home.join("skills/.system/imagegen/SKILL.md"),
            &skill("imagegen", "Images"),
        );
        write(
            &homes.admin_dir.join("policy/SKILL.md"),
            &skill("policy", "Rules"),
        );
        // Outside the project root: not a root.
        write(
            &tmp.path().join(".codex/skills/outside/SKILL.md"),
            &skill("outside", "No"),
        );

        let response = list_skills(
            &SkillsListParams {
                cwds: vec![cwd.display().to_string()],
                force_reload: true,
            },
            &homes,
            Path::new("/"),
        );
        let entry = &response.data[0];
        assert_eq!(entry.cwd, cwd.display().to_string());
        assert!(entry.errors.is_empty(), "{:?}", entry.errors);
        let listed: Vec<(&str, SkillScope)> = entry
            .skills
            .iter()
            .map(|s| (s.name.as_str(), s.scope))
            .collect();
        assert_eq!(
            listed,
            [
                ("deploy", SkillScope::Repo),
                ("lint", SkillScope::Repo),
                ("deep", SkillScope::User),
                ("notes", SkillScope::User),
                ("imagegen", SkillScope::System),
                ("policy", SkillScope::Admin),
            ]
        );
        let deploy = &entry.skills[0];
        assert_eq!(deploy.description, "Ship it");
        assert!(deploy.path.ends_with(".codex/skills/deploy/SKILL.md"));
        let notes = entry.skills.iter().find(|s| s.name == "notes").unwrap();
        assert_eq!(notes.description, "Keep notes tidy");
        assert_eq!(notes.short_description.as_deref(), Some("Notes"));
        let deep = entry.skills.iter().find(|s| s.name == "deep").unwrap();
        assert_eq!(deep.description, "Nested");
    }

    #[test]
    fn broken_files_become_errors_not_failures() {
        let tmp = tempfile::tempdir().unwrap();
        let homes = SkillHomes {
            codex_home: tmp.path().to_owned(),
            user_home: None,
            admin_dir: tmp.path().join("none"),
        };
        let cases = [
            (
                "nofront",
                "# just text\n",
                "missing YAML frontmatter delimited by ---",
            ),
            (
                "noname",
                "---\ndescription: d\n---\n",
                "missing field `name`",
            ),
            (
                "nodesc",
                "---\nname: n\n---\n",
                "missing field `description`",
            ),
            (
                "quote",
                "---\nname: \"n\ndescription: d\n---\n",
                "invalid YAML frontmatter: unterminated quote: \"n",
            ),
        ];
        for (dir, text, _) in &cases {
            write(&tmp.path().join("skills").join(dir).join("SKILL.md"), text);
        }
        write(
            &tmp.path().join("skills/good/SKILL.md"),
            &skill("good", "Fine"),
        );
        let response = list_skills(&SkillsListParams::default(), &homes, tmp.path());
        let entry = &response.data[0];
        assert_eq!(entry.cwd, tmp.path().display().to_string());
        assert_eq!(entry.skills.len(), 1);
        assert_eq!(entry.errors.len(), cases.len());
        for (dir, _, message) in &cases {
            let error = entry
                .errors
                .iter()
                .find(|e| e.path.contains(&format!("/{dir}/")))
                .unwrap();
            assert_eq!(error.message, *message);
        }
    }
}
