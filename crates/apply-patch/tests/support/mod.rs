//! Building file trees in temporary directories and reading them back, byte for byte.

#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One entry of a tree: a file's bytes, or a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    Dir,
}

/// A tree as `relative path (with /) → entry`, directories included.
pub type Tree = BTreeMap<String, Entry>;

/// A tree from `(path, contents)` pairs; a path ending in `/` is a directory.
pub fn tree(entries: &[(&str, &str)]) -> Tree {
    let mut tree = Tree::new();
    for (path, contents) in entries {
        let (path, entry) = match path.strip_suffix('/') {
            Some(dir) => (dir, Entry::Dir),
            None => (*path, Entry::File(contents.as_bytes().to_vec())),
        };
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|dir| !dir.as_os_str().is_empty()) {
            tree.insert(dir.display().to_string(), Entry::Dir);
            parent = dir.parent();
        }
        tree.insert(path.to_string(), entry);
    }
    tree
}

/// A fresh temporary directory holding `tree`.
pub fn make_dir(tree: &Tree) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    for (path, entry) in tree {
        let full = dir.path().join(path);
        match entry {
            Entry::Dir => fs::create_dir_all(&full).expect("create a directory"),
            Entry::File(bytes) => {
                fs::create_dir_all(full.parent().expect("a file has a parent"))
                    .expect("create a parent directory");
                fs::write(&full, bytes).expect("write a file");
            }
        }
    }
    dir
}

/// Everything under `root`, read back.
pub fn read_tree(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read a directory") {
            let path: PathBuf = entry.expect("read a directory entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("entries are under the root")
                .display()
                .to_string();
            if path.is_dir() {
                tree.insert(relative, Entry::Dir);
                pending.push(path);
            } else {
                tree.insert(relative, Entry::File(fs::read(&path).expect("read a file")));
            }
        }
    }
    tree
}
