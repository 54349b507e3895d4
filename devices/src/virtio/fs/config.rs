//! The virtio-fs device configuration (virtio 1.2 section 5.11.4).
//!
//! ```text
//! u8   tag[36]              UTF-8 name of the share, NUL padded (not
//!                           NUL terminated when all 36 bytes are used)
//! le32 num_request_queues   request queues after the hiprio queue
//! ```
//!
//! `notify_buf_size` follows only with VIRTIO_FS_F_NOTIFICATION, which this
//! device does not offer.

use super::FsError;

/// Size of the `tag` field.
pub const TAG_LEN: usize = 36;
/// Size of the configuration this device exposes.
pub const CONFIG_LEN: usize = TAG_LEN + 4;

/// The device configuration of one share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    tag: [u8; TAG_LEN],
    num_request_queues: u32,
}

impl FsConfig {
    /// A configuration for `tag` with `num_request_queues` request queues.
    /// The tag must be 1 to 36 bytes without NUL; at least one request
    /// queue is needed.
    pub fn new(tag: &str, num_request_queues: u16) -> Result<Self, FsError> {
        let bytes = tag.as_bytes();
        if bytes.is_empty() {
            return Err(FsError::TagEmpty);
        }
        if bytes.len() > TAG_LEN {
            return Err(FsError::TagTooLong { len: bytes.len() });
        }
        if bytes.contains(&0) {
            return Err(FsError::TagHasNul);
        }
        if num_request_queues == 0 {
            return Err(FsError::NoRequestQueues);
        }
        let mut padded = [0u8; TAG_LEN];
        padded
            .iter_mut()
            .zip(bytes)
            .for_each(|(dst, src)| *dst = *src);
        Ok(FsConfig {
            tag: padded,
            num_request_queues: u32::from(num_request_queues),
        })
    }

    /// The tag as given (without padding).
    pub fn tag(&self) -> &str {
        let end = self.tag.iter().position(|b| *b == 0).unwrap_or(TAG_LEN);
        self.tag
            .get(..end)
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or_default()
    }

    /// Number of request queues.
    pub fn num_request_queues(&self) -> u32 {
        self.num_request_queues
    }

    /// The configuration as the guest reads it.
    pub fn to_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut out = [0u8; CONFIG_LEN];
        let (tag, queues) = out.split_at_mut(TAG_LEN);
        tag.copy_from_slice(&self.tag);
        queues.copy_from_slice(&self.num_request_queues.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_padded_tag_then_le32_queue_count() {
        let c = FsConfig::new("share", 3).unwrap();
        let b = c.to_bytes();
        assert_eq!(b.len(), 40);
        assert_eq!(&b[..5], b"share");
        assert!(b[5..36].iter().all(|x| *x == 0));
        assert_eq!(&b[36..], &[3, 0, 0, 0]);
        assert_eq!(c.tag(), "share");
        assert_eq!(c.num_request_queues(), 3);
    }

    #[test]
    fn a_36_byte_tag_fills_the_field_without_terminator() {
        let tag = "a".repeat(TAG_LEN);
        let c = FsConfig::new(&tag, 1).unwrap();
        let b = c.to_bytes();
        assert!(b[..36].iter().all(|x| *x == b'a'));
        assert_eq!(&b[36..], &[1, 0, 0, 0]);
        assert_eq!(c.tag(), tag);
    }

    #[test]
    fn multibyte_tag_is_counted_in_bytes() {
        // 12 three-byte characters = 36 bytes fit, 13 do not.
        assert!(FsConfig::new(&"€".repeat(12), 1).is_ok());
        assert!(matches!(
            FsConfig::new(&"€".repeat(13), 1),
            Err(FsError::TagTooLong { len: 39 })
        ));
    }

    #[test]
    fn invalid_tags_and_queue_counts_are_typed_errors() {
        assert!(matches!(
            FsConfig::new(&"x".repeat(37), 1),
            Err(FsError::TagTooLong { len: 37 })
        ));
        assert!(matches!(FsConfig::new("", 1), Err(FsError::TagEmpty)));
        assert!(matches!(FsConfig::new("a\0b", 1), Err(FsError::TagHasNul)));
        assert!(matches!(
            FsConfig::new("ok", 0),
            Err(FsError::NoRequestQueues)
        ));
    }
}
