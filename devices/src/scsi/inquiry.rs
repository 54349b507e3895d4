//! INQUIRY data: the standard page and the vital product data pages.

use super::sense::Sense;

/// Peripheral device type of a direct-access block device.
pub const TYPE_DISK: u8 = 0x00;
/// Peripheral byte of a LUN that is not connected (qualifier 3, type 0x1f):
/// Linux removes or skips a device that answers INQUIRY with it.
pub const NOT_CONNECTED: u8 = 0x7f;
/// T10 vendor identification reported by every LUN.
pub const VENDOR: &[u8; 8] = b"UVM     ";
/// Product identification.
pub const PRODUCT: &[u8; 16] = b"VIRTUAL DISK    ";
/// Product revision level.
pub const REVISION: &[u8; 4] = b"1.0 ";
/// Longest unit serial number reported (longer ones are cut).
pub const MAX_SERIAL_LEN: usize = 36;

/// VPD pages this emulation supports, in ascending order.
pub const SUPPORTED_VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/// Standard INQUIRY data (36 bytes) with `peripheral` as byte 0.
pub fn standard(peripheral: u8) -> Vec<u8> {
    let mut b = vec![0u8; 36];
    b[0] = peripheral;
    b[2] = 0x05; // SPC-3
    b[3] = 0x12; // HISUP, response data format 2
    b[4] = 36 - 5;
    b[7] = 0x02; // CMDQUE
    b[8..16].copy_from_slice(VENDOR);
    b[16..32].copy_from_slice(PRODUCT);
    b[32..36].copy_from_slice(REVISION);
    b
}

/// What the VPD pages describe about a disk.
#[derive(Debug, Clone)]
pub struct VpdInfo<'a> {
    /// Unit serial number (printable ASCII, at most [`MAX_SERIAL_LEN`] bytes).
    pub serial: &'a str,
    /// Largest READ/WRITE transfer in blocks.
    pub max_transfer_blocks: u32,
}

fn page(code: u8, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.push(TYPE_DISK);
    b.push(code);
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// Makes a serial safe for the VPD pages: printable ASCII, bounded length.
pub fn sanitize_serial(serial: &str) -> String {
    serial
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_SERIAL_LEN)
        .collect()
}

/// The VPD page `code`, or INVALID FIELD IN CDB for a page not supported.
pub fn vpd(code: u8, info: &VpdInfo<'_>) -> Result<Vec<u8>, Sense> {
    let serial = info.serial.as_bytes();
    Ok(match code {
        0x00 => page(code, &SUPPORTED_VPD_PAGES),
        0x80 => page(code, serial),
        0x83 => {
            // One designator: T10 vendor ID based, ASCII, associated with the LU.
            let mut d = vec![0x02, 0x01, 0x00, (VENDOR.len() + serial.len()) as u8];
            d.extend_from_slice(VENDOR);
            d.extend_from_slice(serial);
            page(code, &d)
        }
        0xb0 => {
            let mut body = [0u8; 0x3c];
            // Maximum and optimal transfer length, in blocks (bytes 8 and 12
            // of the page, 4 and 8 of the body).
            body[4..8].copy_from_slice(&info.max_transfer_blocks.to_be_bytes());
            body[8..12].copy_from_slice(&info.max_transfer_blocks.to_be_bytes());
            page(code, &body)
        }
        0xb1 => {
            let mut body = [0u8; 0x3c];
            body[0..2].copy_from_slice(&1u16.to_be_bytes()); // non-rotating medium
            page(code, &body)
        }
        // Logical block provisioning: no UNMAP, no WRITE SAME, fully provisioned.
        0xb2 => page(code, &[0u8; 4]),
        _ => return Err(Sense::INVALID_FIELD),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_fields() {
        let b = standard(TYPE_DISK);
        assert_eq!(b.len(), 36);
        assert_eq!(usize::from(b[4]) + 5, b.len());
        assert_eq!(&b[8..16], VENDOR);
    }

    #[test]
    fn serial_is_sanitized() {
        assert_eq!(sanitize_serial("a b\u{1}c\u{e9}"), "abc");
        assert_eq!(sanitize_serial(&"x".repeat(100)).len(), MAX_SERIAL_LEN);
    }

    #[test]
    fn unknown_page_is_invalid_field() {
        let info = VpdInfo {
            serial: "s",
            max_transfer_blocks: 8,
        };
        assert_eq!(vpd(0x89, &info), Err(Sense::INVALID_FIELD));
        let p = vpd(0x00, &info).unwrap_or_default();
        assert_eq!(&p[4..], &SUPPORTED_VPD_PAGES);
    }
}
