//! An inline command's line split into arguments exactly as Redis splits it.

use bytes::Bytes;

/// C `isspace` in the "C" locale; unlike `u8::is_ascii_whitespace` it includes `\v`.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

#[derive(Clone, Copy)]
enum Quoting {
    None,
    Double,
    Single,
}

/// Redis's `sdssplitargs`, quirks included: tokens end only at space, tab, CR or LF (so `\v`
/// and `\f` are skipped between tokens but kept inside one), quotes may open mid-token
/// (`a"b c"` is `ab c`), and a closing quote must be followed by whitespace or the end.
/// `None` is Redis's "unbalanced quotes".
pub(super) fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    // Reading past the end gives 0, standing in for the NUL that ends Redis's C string.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let ends_token = |b: u8| b == 0 || is_c_space(b);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_c_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let mut quoting = Quoting::None;
        loop {
            let c = at(p);
            match quoting {
                Quoting::Double => {
                    if c == b'\\' && at(p + 1) == b'x' {
                        if let (Some(hi), Some(lo)) = (hex_value(at(p + 2)), hex_value(at(p + 3))) {
                            arg.push(hi << 4 | lo);
                            p += 4;
                            continue;
                        }
                    }
                    if c == b'\\' && at(p + 1) != 0 {
                        p += 1;
                        arg.push(match at(p) {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => b'\x08',
                            b'a' => b'\x07',
                            other => other,
                        });
                    } else if c == b'"' {
                        if !ends_token(at(p + 1)) {
                            return None;
                        }
                        p += 1;
                        break;
                    } else if c == 0 {
                        return None;
                    } else {
                        arg.push(c);
                    }
                }
                Quoting::Single => {
                    if c == b'\\' && at(p + 1) == b'\'' {
                        p += 1;
                        arg.push(b'\'');
                    } else if c == b'\'' {
                        if !ends_token(at(p + 1)) {
                            return None;
                        }
                        p += 1;
                        break;
                    } else if c == 0 {
                        return None;
                    } else {
                        arg.push(c);
                    }
                }
                Quoting::None => match c {
                    b' ' | b'\n' | b'\r' | b'\t' => {
                        p += 1;
                        break;
                    }
                    0 => break,
                    b'"' => quoting = Quoting::Double,
                    b'\'' => quoting = Quoting::Single,
                    _ => arg.push(c),
                },
            }
            p += 1;
        }
        args.push(Bytes::from(arg));
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
