//! Permission paths: `user/$userId`, `feed/*`, `*`. A path matches a whole name; `*` stands for
//! any run of characters (slashes included) and `$name` for one or more characters other than
//! `/`, captured for the rule. This is what deepstream's regular expression does (`*` → `.*`,
//! `$name` → `([^/]+)`, anchored at both ends, greedy), matched here by hand with
//! backtracking. Called by `permission::Permissions` for every checked message.

/// One part of a compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Wildcard,
    Variable(String),
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// As written (its length decides which matching path is the most specific).
    pub text: String,
    parts: Vec<Part>,
}

impl PathPattern {
    /// Compiles a path; the error says what is wrong, as deepstream's validator does.
    pub fn compile(text: &str) -> Result<PathPattern, String> {
        if text.is_empty() {
            return Err("path can't be empty".into());
        }
        if text.starts_with('/') {
            return Err("path can't start with /".into());
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '*' => {
                    flush(&mut literal, &mut parts);
                    parts.push(Part::Wildcard);
                }
                '$' => {
                    let start = at + 1;
                    let mut end = start;
                    while let Some((index, next)) = chars.peek().copied() {
                        if !next.is_ascii_alphanumeric() {
                            break;
                        }
                        end = index + next.len_utf8();
                        chars.next();
                    }
                    if end == start {
                        let after = text[start..].chars().next().map(String::from);
                        return Err(format!(
                            "invalid variable name ${}",
                            after.unwrap_or_default()
                        ));
                    }
                    flush(&mut literal, &mut parts);
                    parts.push(Part::Variable(text[at..end].to_string()));
                }
                c => literal.push(c),
            }
        }
        flush(&mut literal, &mut parts);
        Ok(PathPattern {
            text: text.to_string(),
            parts,
        })
    }

    /// The `$variables` of the path, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether `name` matches; its captures (one per variable, in order) when it does.
    pub fn matches(&self, name: &str) -> Option<Vec<String>> {
        let mut captures = Vec::new();
        match_parts(&self.parts, name, &mut captures).then_some(captures)
    }
}

fn flush(literal: &mut String, parts: &mut Vec<Part>) {
    if !literal.is_empty() {
        parts.push(Part::Literal(std::mem::take(literal)));
    }
}

/// Greedy with backtracking, as a regular expression: the longest run first.
fn match_parts(parts: &[Part], name: &str, captures: &mut Vec<String>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return name.is_empty();
    };
    match first {
        Part::Literal(literal) => name
            .strip_prefix(literal.as_str())
            .is_some_and(|tail| match_parts(rest, tail, captures)),
        Part::Wildcard => {
            ends(name, name.len()).any(|end| match_parts(rest, &name[end..], captures))
        }
        Part::Variable(_) => {
            let limit = name.find('/').unwrap_or(name.len());
            for end in ends(name, limit).filter(|end| *end > 0) {
                captures.push(name[..end].to_string());
                if match_parts(rest, &name[end..], captures) {
                    return true;
                }
                captures.pop();
            }
            false
        }
    }
}

/// Character boundaries of `name` up to `limit`, longest first.
fn ends(name: &str, limit: usize) -> impl Iterator<Item = usize> + '_ {
    (0..=limit).rev().filter(|end| name.is_char_boundary(*end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captures(path: &str, name: &str) -> Option<Vec<String>> {
        PathPattern::compile(path).expect("compiles").matches(name)
    }

    #[test]
    fn paths_match_like_deepstreams_regular_expressions() {
        assert_eq!(captures("*", "anything/at/all"), Some(vec![]));
        assert_eq!(
            captures("user/$userId", "user/alice"),
            Some(vec!["alice".into()])
        );
        assert_eq!(captures("user/$userId", "user/alice/x"), None);
        assert_eq!(captures("user/$userId", "user/"), None);
        assert_eq!(captures("feed/*", "feed/a/b"), Some(vec![]));
        assert_eq!(captures("feed/*", "feeds/a"), None);
        assert_eq!(
            captures("a/$x/*/$y", "a/1/m/n/2"),
            Some(vec!["1".into(), "2".into()])
        );
        assert_eq!(
            captures("$a-$b", "x-y-z"),
            Some(vec!["x-y".into(), "z".into()])
        );
        assert_eq!(captures("prefix*", "prefix"), Some(vec![]));
    }

    #[test]
    fn bad_paths_are_refused() {
        assert_eq!(PathPattern::compile(""), Err("path can't be empty".into()));
        assert_eq!(
            PathPattern::compile("/a"),
            Err("path can't start with /".into())
        );
        assert_eq!(
            PathPattern::compile("a/$-x"),
            Err("invalid variable name $-".into())
        );
    }
}
