//! MODE SENSE(6/10): header, short block descriptor, and the caching and
//! control pages.

use super::cdb::{BLOCK_SIZE, PageControl};
use super::sense::Sense;

/// Caching mode page code.
pub const PAGE_CACHING: u8 = 0x08;
/// Control mode page code.
pub const PAGE_CONTROL: u8 = 0x0a;
/// "Return all pages" page code.
pub const PAGE_ALL: u8 = 0x3f;
/// Write-protect bit of the device-specific parameter.
pub const WP: u8 = 0x80;
/// DPOFUA bit of the device-specific parameter: FUA is honoured.
pub const DPOFUA: u8 = 0x10;

/// A MODE SENSE request.
#[derive(Debug, Clone, Copy)]
pub struct ModeRequest {
    /// The 10-byte form.
    pub ten: bool,
    /// No block descriptor.
    pub dbd: bool,
    /// Page control.
    pub pc: PageControl,
    /// Page code.
    pub page: u8,
    /// Subpage code.
    pub subpage: u8,
}

fn caching_page(pc: PageControl) -> [u8; 20] {
    let mut p = [0u8; 20];
    p[0] = PAGE_CACHING;
    p[1] = 0x12;
    if pc != PageControl::Changeable {
        p[2] = 0x04; // WCE: writes are cached until SYNCHRONIZE CACHE
    }
    p
}

fn control_page(_pc: PageControl) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0] = PAGE_CONTROL;
    p[1] = 0x0a;
    p
}

/// Builds the mode parameter data for a disk of `blocks` blocks.
pub fn mode_sense(req: &ModeRequest, blocks: u64, read_only: bool) -> Result<Vec<u8>, Sense> {
    if req.pc == PageControl::Saved {
        return Err(Sense::SAVING_NOT_SUPPORTED);
    }
    let mut pages = Vec::new();
    match (req.page, req.subpage) {
        (PAGE_CACHING, 0) => pages.extend_from_slice(&caching_page(req.pc)),
        (PAGE_CONTROL, 0) => pages.extend_from_slice(&control_page(req.pc)),
        (PAGE_ALL, 0 | 0xff) => {
            pages.extend_from_slice(&caching_page(req.pc));
            pages.extend_from_slice(&control_page(req.pc));
        }
        _ => return Err(Sense::INVALID_FIELD),
    }
    let mut desc = Vec::new();
    if !req.dbd {
        let n = u32::try_from(blocks.min(0xff_ffff)).unwrap_or(0xff_ffff);
        desc.push(0); // density code
        desc.extend_from_slice(&n.to_be_bytes()[1..]);
        desc.push(0);
        desc.extend_from_slice(&(BLOCK_SIZE as u32).to_be_bytes()[1..]);
    }
    let dev_specific = DPOFUA | if read_only { WP } else { 0 };
    let mut out = Vec::new();
    if req.ten {
        let len = 8 + desc.len() + pages.len() - 2;
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(0); // medium type
        out.push(dev_specific);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(desc.len() as u16).to_be_bytes());
    } else {
        let len = 4 + desc.len() + pages.len() - 1;
        out.push(len as u8);
        out.push(0);
        out.push(dev_specific);
        out.push(desc.len() as u8);
    }
    out.extend_from_slice(&desc);
    out.extend_from_slice(&pages);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ten: bool, page: u8) -> ModeRequest {
        ModeRequest {
            ten,
            dbd: false,
            pc: PageControl::Current,
            page,
            subpage: 0,
        }
    }

    #[test]
    fn six_byte_all_pages() {
        let d = mode_sense(&req(false, PAGE_ALL), 2048, true).unwrap_or_default();
        assert_eq!(usize::from(d[0]) + 1, d.len());
        assert_eq!(d[2] & WP, WP);
        assert_eq!(d[3], 8);
        assert_eq!(d[4 + 8], PAGE_CACHING);
        assert_eq!(d[4 + 8 + 20], PAGE_CONTROL);
    }

    #[test]
    fn ten_byte_caching_page() {
        let d = mode_sense(&req(true, PAGE_CACHING), 2048, false).unwrap_or_default();
        assert_eq!(usize::from(u16::from_be_bytes([d[0], d[1]])) + 2, d.len());
        assert_eq!(d[3] & WP, 0);
        assert_eq!(d[8 + 8 + 2] & 0x04, 0x04);
    }

    #[test]
    fn saved_and_unknown_pages_fail() {
        let mut r = req(false, PAGE_CACHING);
        r.pc = PageControl::Saved;
        assert_eq!(mode_sense(&r, 1, false), Err(Sense::SAVING_NOT_SUPPORTED));
        assert_eq!(
            mode_sense(&req(false, 0x1c), 1, false),
            Err(Sense::INVALID_FIELD)
        );
    }
}
