//! Argument parsing with Redis' exact acceptance rules, so a value Redis rejects is rejected
//! here with the same error (and one it accepts is accepted).

use super::reply::Reply;

/// Redis' `string2ll`: optional `-`, no `+`, no leading zeros, no spaces, in `i64` range.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate negatively so i64::MIN parses without overflow.
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(acc)
    } else {
        acc.checked_neg()
    }
}

/// An integer argument, or Redis' `ERR value is not an integer or out of range`.
pub(crate) fn int_arg(s: &[u8]) -> Result<i64, Reply> {
    parse_i64(s).ok_or_else(Reply::not_integer)
}

/// A SCAN cursor as Redis reads it with `strtoull`: an empty string is 0, a sign is allowed
/// and a negative number wraps around; anything else is `ERR invalid cursor`.
pub(crate) fn cursor_arg(s: &[u8]) -> Result<u64, Reply> {
    let invalid = || Reply::err("ERR invalid cursor");
    if s.is_empty() {
        return Ok(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let mut value: u64 = 0;
    for &d in digits {
        value = value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or_else(invalid)?;
    }
    Ok(if negative { value.wrapping_neg() } else { value })
}

pub(crate) fn eq_ic(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"-0", b"01", b"+1", b" 1", b"1 ", b"1.5", b"9223372036854775808", b"abc"] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn cursors_follow_strtoull() {
        assert_eq!(cursor_arg(b""), Ok(0));
        assert_eq!(cursor_arg(b"+7"), Ok(7));
        assert_eq!(cursor_arg(b"-1"), Ok(u64::MAX));
        assert_eq!(cursor_arg(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [&b"abc"[..], b"-", b" 1", b"1x", b"18446744073709551616"] {
            assert_eq!(cursor_arg(bad), Err(Reply::err("ERR invalid cursor")));
        }
    }
}
