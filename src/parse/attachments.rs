//! The bytes of a message's attachments, for the one path that forwards them: an agent's
//! answer relayed to the customer. Parsing keeps only their descriptions
//! ([`super::AttachmentMeta`]); this reads the raw message again when a relay is rendered.

use mail_parser::{MessageParser, MimeHeaders};

/// One attachment, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name the sender gave, or `attachment-N` (N from 1).
    pub filename: String,
    /// `type/subtype`, lower-case; `application/octet-stream` when unknown.
    pub content_type: String,
    pub contents: Vec<u8>,
}

/// The attachments of `raw` in message order, decoded from their transfer encoding. Inline
/// text bodies are not attachments; an image inline in HTML is.
pub fn attachments(raw: &[u8]) -> Vec<Attachment> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    msg.attachments
        .iter()
        .filter(|&&i| i != 0)
        .filter_map(|&i| msg.part(i))
        .enumerate()
        .map(|(n, part)| Attachment {
            filename: part
                .attachment_name()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("attachment-{}", n + 1)),
            content_type: part
                .content_type()
                .map(super::mime_type_of)
                .unwrap_or_else(|| "application/octet-stream".into()),
            contents: part.contents().to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_come_back_decoded_with_their_names() {
        let raw = b"From: a@b\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n\
Content-Type: image/png; name=\"shot.png\"\r\nContent-Disposition: attachment; filename=\"shot.png\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";
        let found = attachments(raw);
        assert_eq!(
            found,
            vec![Attachment {
                filename: "shot.png".into(),
                content_type: "image/png".into(),
                contents: b"hello".to_vec(),
            }]
        );
        assert!(attachments(b"From: a@b\r\n\r\nplain").is_empty());
    }
}
