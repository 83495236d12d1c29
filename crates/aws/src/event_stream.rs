//! AWS's event stream encoding (`application/vnd.amazon.eventstream`), as
//! InvokeWithResponseStream answers and botocore decodes: each message is
//! its total length, its headers' length and a CRC of those two, the
//! headers (name, type 7 for a string, value), the payload, and a CRC of
//! all that came before.

use bytes::{BufMut, Bytes, BytesMut};

/// One event: its type (`:event-type`), payload content type and payload.
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    let mut headers = BytesMut::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", content_type),
        (":message-type", "event"),
    ] {
        headers.put_u8(name.len() as u8);
        headers.put_slice(name.as_bytes());
        headers.put_u8(7);
        headers.put_u16(value.len() as u16);
        headers.put_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut m = BytesMut::with_capacity(total);
    m.put_u32(total as u32);
    m.put_u32(headers.len() as u32);
    let prelude_crc = crc32fast::hash(&m[..8]);
    m.put_u32(prelude_crc);
    m.put_slice(&headers);
    m.put_slice(payload);
    let crc = crc32fast::hash(&m);
    m.put_u32(crc);
    m.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a message back the way a decoder does, checking both CRCs.
    fn decode(m: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
        let total = u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, m.len());
        assert_eq!(
            u32::from_be_bytes(m[8..12].try_into().unwrap()),
            crc32fast::hash(&m[..8])
        );
        assert_eq!(
            u32::from_be_bytes(m[total - 4..].try_into().unwrap()),
            crc32fast::hash(&m[..total - 4])
        );
        let mut headers = Vec::new();
        let mut at = 12;
        while at < 12 + headers_len {
            let n = m[at] as usize;
            let name = String::from_utf8(m[at + 1..at + 1 + n].to_vec()).unwrap();
            at += 1 + n;
            assert_eq!(m[at], 7);
            let len = u16::from_be_bytes([m[at + 1], m[at + 2]]) as usize;
            let value = String::from_utf8(m[at + 3..at + 3 + len].to_vec()).unwrap();
            at += 3 + len;
            headers.push((name, value));
        }
        (headers, m[12 + headers_len..total - 4].to_vec())
    }

    #[test]
    fn messages_frame_their_headers_and_payload() {
        let m = event("PayloadChunk", "application/octet-stream", b"hello");
        let (headers, payload) = decode(&m);
        assert_eq!(payload, b"hello");
        assert_eq!(headers[0], (":event-type".into(), "PayloadChunk".into()));
        assert_eq!(headers[2], (":message-type".into(), "event".into()));
        let empty = event("InvokeComplete", "application/json", b"");
        assert_eq!(decode(&empty).1, b"");
    }
}
