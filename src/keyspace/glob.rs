//! Redis' `stringmatchlen` (case-sensitive), used by `KEYS` and `SCAN MATCH`.
//!
//! A port rather than a glob crate because the corner cases are part of the contract: an
//! unterminated `[` class, `\` inside classes, reversed ranges (`[z-a]`), the `[^` class that
//! runs to the end of the pattern, and ranges compared as C `char` (signed) all behave as in
//! Redis. Matching is on bytes. Only the pattern is a glob: a `*` inside a key (Hipache's
//! `frontend:*.example.com`) is ordinary data that `\*` or `?` can match.

/// Redis gives up (no match) past this recursion depth to protect against abusive patterns.
const MAX_NESTING: u32 = 1000;

pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_from(pattern, string, &mut skip_longer, 0)
}

/// The pattern byte at `i`, or NUL past the end, as Redis reads its NUL-terminated strings.
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// C `char` on x86 is signed: bytes above 0x7f sort below ASCII in `[a-z]` ranges.
fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

fn match_from(pat: &[u8], s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    let (mut p, mut i) = (0usize, 0usize);
    while p < pat.len() && i < s.len() {
        match pat[p] {
            b'*' => {
                while p + 1 < pat.len() && pat[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == pat.len() {
                    return true;
                }
                while i < s.len() {
                    if match_from(&pat[p + 1..], &s[i..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    i += 1;
                }
                // The rest of the pattern matches no suffix; a longer match for an earlier
                // `*` can only start later, so no caller can succeed either.
                *skip_longer = true;
                return false;
            }
            b'?' => i += 1,
            b'[' => {
                p += 1;
                let negate = at(pat, p) == b'^';
                if negate {
                    p += 1;
                }
                let c = s[i];
                let mut hit = false;
                loop {
                    if at(pat, p) == b'\\' && pat.len() - p >= 2 {
                        p += 1;
                        hit |= pat[p] == c;
                    } else if at(pat, p) == b']' {
                        break;
                    } else if p >= pat.len() {
                        // Unterminated class: step back so the shared `p += 1` below ends the
                        // pattern exactly at its end.
                        p -= 1;
                        break;
                    } else if pat.len() - p >= 3 && pat[p + 1] == b'-' {
                        let (a, b) = (signed(pat[p]), signed(pat[p + 2]));
                        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                        hit |= (lo..=hi).contains(&signed(c));
                        p += 2;
                    } else {
                        hit |= pat[p] == c;
                    }
                    p += 1;
                }
                if hit == negate {
                    return false;
                }
                i += 1;
            }
            b'\\' if pat.len() - p >= 2 => {
                p += 1;
                if pat[p] != s[i] {
                    return false;
                }
                i += 1;
            }
            literal => {
                if literal != s[i] {
                    return false;
                }
                i += 1;
            }
        }
        p += 1;
        if i == s.len() {
            while at(pat, p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p >= pat.len() && i == s.len()
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, s: &str) -> bool {
        matches(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        // As in Redis, `*` needs a non-empty string; KEYS and SCAN special-case a lone `*`.
        assert!(!m("*", ""));
        assert!(!m("**", ""));
        assert!(m("*", "anything"));
        assert!(m("frontend:*", "frontend:www.example.com"));
        assert!(!m("frontend:*", "dead:www"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("a**", "a"));
        assert!(!m("", "a"));
        assert!(m("", ""));
        assert!(!m("?", ""));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "reversed ranges are swapped");
        assert!(m("[\\]]", "]"));
        // `[a-]` is the range `]`..`a` (checked against redis-server 7.0.15).
        assert!(m("[a-]", "a"));
        assert!(m("[a-]", "^"));
        assert!(!m("[a-]", "-"));
        // Unterminated classes end at the pattern's end, as in Redis.
        assert!(m("[ab", "a"));
        assert!(!m("[ab", "c"));
        assert!(m("[^", "x"));
        assert!(!m("[", "x"));
    }

    #[test]
    fn escapes_and_literal_stars_in_keys() {
        assert!(m("frontend:\\*.example.com", "frontend:*.example.com"));
        assert!(!m("frontend:\\*.example.com", "frontend:a.example.com"));
        assert!(m("frontend:*.example.com", "frontend:*.example.com"));
        assert!(m("a\\", "a\\"), "a trailing backslash is a literal");
        assert!(m("\\?", "?"));
        assert!(!m("\\?", "x"));
    }

    #[test]
    fn bytes_not_chars() {
        assert!(matches(b"?", &[0xc3]));
        assert!(!matches(b"?", "é".as_bytes()), "é is two bytes");
        assert!(matches(b"??", "é".as_bytes()));
        // 0xe9 is negative as a C char, so it falls outside [a-z] but inside [\x80-a].
        assert!(!matches(b"[a-z]", &[0xe9]));
        assert!(matches(&[b'[', 0x80, b'-', b'a', b']'], &[0xe9]));
    }

    #[test]
    fn pathological_patterns_terminate() {
        let pattern = "a*".repeat(50) + "b";
        assert!(!m(&pattern, &"a".repeat(100)));
        let deep = "*?".repeat(2000);
        assert!(!m(&deep, &"x".repeat(1500)));
    }
}
