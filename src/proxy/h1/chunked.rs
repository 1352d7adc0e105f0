//! Finds where a chunked body ends, so it can be relayed byte for byte (chunk sizes,
//! extensions and trailers included) and the backend connection reused after it.
//! It never rewrites: relaying unchanged keeps the framing the client sees identical to
//! what was validated here.

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Hex digits of a chunk size; `seen` says whether there was at least one.
    Size {
        value: u64,
        seen: bool,
    },
    /// Whitespace or an extension after the size, up to CR.
    SizeRest,
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    EndLf,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("malformed chunked body from the backend")]
pub struct Malformed;

#[derive(Debug)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner { state: State::Size { value: 0, seen: false }, size: 0 }
    }
}

impl ChunkedScanner {
    /// Consumes `data`; `Some(n)` when the body ends after `data[..n]`.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                State::Size { value, seen } => match hex(b) {
                    Some(d) => State::Size {
                        value: value.checked_mul(16).and_then(|v| v.checked_add(d)).ok_or(Malformed)?,
                        seen: true,
                    },
                    None if !seen => return Err(Malformed),
                    None if b == b'\r' => State::SizeLf { value },
                    None if matches!(b, b' ' | b'\t' | b';') => {
                        self.size = value;
                        State::SizeRest
                    }
                    None => return Err(Malformed),
                },
                State::SizeRest => match b {
                    b'\r' => State::SizeLf { value: self.size },
                    b'\n' => return Err(Malformed),
                    _ => State::SizeRest,
                },
                State::SizeLf { value } if b == b'\n' => match value {
                    0 => State::TrailerStart,
                    left => State::Data { left },
                },
                State::Data { left } => {
                    // Skip the chunk's bytes in one step.
                    let take = left.min((data.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left { State::DataCr } else { State::Data { left: left - take } };
                    continue;
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { value: 0, seen: false },
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    b'\n' => return Err(Malformed),
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\n' => State::TrailerStart,
                    _ => State::TrailerLine,
                },
                State::EndLf if b == b'\n' => return Ok(Some(i + 1)),
                _ => return Err(Malformed),
            };
            i += 1;
        }
        Ok(None)
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(body: &[u8]) -> Result<Option<usize>, Malformed> {
        ChunkedScanner::default().feed(body)
    }

    #[test]
    fn finds_the_end_in_one_piece() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nNEXT";
        assert_eq!(end_of(body), Ok(Some(body.len() - 4)));
        let trailers = b"0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        assert_eq!(end_of(trailers), Ok(Some(trailers.len())));
        assert_eq!(end_of(b"A \r\n0123456789\r\n0\r\n\r\n"), Ok(Some(21)));
    }

    #[test]
    fn finds_the_end_byte_by_byte() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: x\r\n\r\n";
        let mut s = ChunkedScanner::default();
        for (i, b) in body.iter().enumerate() {
            let r = s.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(r, (i == body.len() - 1).then_some(1), "at byte {i}");
        }
    }

    #[test]
    fn rejects_malformed_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"3\r\nabcX",
            b"3\nabc",
            b"0\r\n\n",
            b"ffffffffffffffffff\r\n",
            b"3\r\nabc\r\n0\r\nX\r\n\n",
        ] {
            assert_eq!(end_of(bad), Err(Malformed), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(end_of(b"3\r\nab"), Ok(None));
    }
}
