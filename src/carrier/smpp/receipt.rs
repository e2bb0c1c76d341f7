//! Reading deliver_sm: delivery receipts (TLVs, else the de-facto text format)
//! and mobile-originated messages; SMPP status names.

use rusmpp::CommandStatus;
use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use rusmpp::values::{DataCoding, MessageState};

use crate::domain::encoding::decode_gsm7;
use crate::domain::message::MessageStatus;

/// What a deliver_sm carries.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Deliver {
    Receipt(Receipt),
    /// A receipt we cannot read (no id).
    Unreadable,
    /// A handset's or user's acknowledgement: nothing to record.
    Acknowledgement,
    /// A mobile-originated message.
    Mobile {
        from: String,
        to: String,
        body: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Receipt {
    pub(super) id: String,
    /// The id came from receipted_message_id, which spells it as submit_sm_resp did.
    pub(super) from_tlv: bool,
    /// DELIVRD, UNDELIV, ...
    stat: String,
    err: Option<String>,
}

impl Receipt {
    pub(super) fn status(&self) -> Option<MessageStatus> {
        match self.stat.as_str() {
            "DELIVRD" => Some(MessageStatus::Delivered),
            "UNDELIV" => Some(MessageStatus::Undelivered),
            "EXPIRED" => Some(MessageStatus::Expired),
            "REJECTD" | "UNKNOWN" | "DELETED" | "SKIPPED" => Some(MessageStatus::Failed),
            _ => None, // ACCEPTD, ENROUTE, SCHEDUL
        }
    }

    pub(super) fn error(&self) -> String {
        match &self.err {
            Some(err) => format!("{}:{err}", self.stat),
            None => self.stat.clone(),
        }
    }
}

pub(super) fn parse_deliver(d: &DeliverSm) -> Deliver {
    let esm = u8::from(d.esm_class);
    let text = d.short_message().as_ref();
    // Message type (bits 5-2): 0x04 MC delivery receipt, 0x20 intermediate
    // notification; 0 is a message from a handset; 0x08/0x10 are acknowledgements.
    let kind = esm & 0x3C;
    if kind == 0x08 || kind == 0x10 {
        return Deliver::Acknowledgement;
    }
    if kind == 0 {
        let body = if d.data_coding == DataCoding::Ucs2 {
            let units: Vec<u16> = text
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            decode_gsm7(text)
        };
        return Deliver::Mobile {
            from: plus(d.source_addr.as_str()),
            to: plus(d.destination_addr.as_str()),
            body,
        };
    }
    let mut tlv_id = None;
    let mut tlv_state = None;
    for tlv in d.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.as_str().to_string()),
            Some(TlvValue::MessageState(s)) => tlv_state = Some(state_name(*s)),
            _ => {}
        }
    }
    let parsed = parse_receipt_text(&String::from_utf8_lossy(text));
    let from_tlv = tlv_id.is_some();
    let id = tlv_id.or_else(|| parsed.as_ref().map(|r| r.id.clone()));
    let stat = tlv_state.or_else(|| parsed.as_ref().map(|r| r.stat.clone()));
    match (id, stat) {
        (Some(id), Some(stat)) if !id.is_empty() => Deliver::Receipt(Receipt {
            id,
            from_tlv,
            stat,
            err: parsed.and_then(|r| r.err),
        }),
        _ => Deliver::Unreadable,
    }
}

fn plus(address: &str) -> String {
    match address.bytes().all(|b| b.is_ascii_digit()) && !address.is_empty() {
        true => format!("+{address}"),
        false => address.to_string(),
    }
}

fn state_name(s: MessageState) -> String {
    match s {
        MessageState::Scheduled => "SCHEDUL",
        MessageState::Enroute => "ENROUTE",
        MessageState::Delivered => "DELIVRD",
        MessageState::Expired => "EXPIRED",
        MessageState::Deleted => "DELETED",
        MessageState::Undeliverable => "UNDELIV",
        MessageState::Accepted => "ACCEPTD",
        MessageState::Rejected => "REJECTD",
        MessageState::Skipped => "SKIPPED",
        _ => "UNKNOWN",
    }
    .into()
}

/// The de-facto receipt text (SMPP 3.4 appendix B):
/// `id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...`.
/// Keys are matched case-insensitively and only before `text:`, whose free text might contain anything.
fn parse_receipt_text(text: &str) -> Option<Receipt> {
    let lower = text.to_ascii_lowercase();
    let end = lower.find("text:").unwrap_or(lower.len());
    let field = |key: &str| -> Option<String> {
        let mut from = 0;
        while let Some(at) = lower[from..end].find(key) {
            let start = from + at;
            if start == 0 || lower.as_bytes()[start - 1].is_ascii_whitespace() {
                let value_start = start + key.len();
                let value_end = lower[value_start..end]
                    .find(char::is_whitespace)
                    .map_or(end, |n| value_start + n);
                return Some(text[value_start..value_end].to_string());
            }
            from = start + key.len();
        }
        None
    };
    Some(Receipt {
        id: field("id:")?,
        from_tlv: false,
        stat: field("stat:")?.to_ascii_uppercase(),
        err: field("err:"),
    })
}

/// SMPP command status names as the specification spells them.
pub(super) fn status_name(status: CommandStatus) -> String {
    let code = u32::from(status);
    let name = match code {
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x14 => "ESME_RMSGQFUL",
        0x45 => "ESME_RSUBMITFAIL",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x64 => "ESME_RX_T_APPN",
        0x65 => "ESME_RX_P_APPN",
        0x66 => "ESME_RX_R_APPN",
        0xFF => "ESME_RUNKNOWNERR",
        _ => return format!("SMPP_0x{code:08X}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_text_is_read_whatever_the_case_and_the_free_text() {
        let r = parse_receipt_text(
            "id:0A1B2C sub:001 dlvrd:001 submit date:2611271200 done date:2611271201 \
             stat:DELIVRD err:000 text:stat:UNDELIV id:9",
        )
        .unwrap();
        assert_eq!(r.id, "0A1B2C");
        assert_eq!(r.stat, "DELIVRD");
        assert_eq!(r.err.as_deref(), Some("000"));
        assert_eq!(r.status(), Some(MessageStatus::Delivered));

        let r = parse_receipt_text("ID:77 SUB:001 DLVRD:000 Stat:undeliv Err:001 Text:").unwrap();
        assert_eq!((r.id.as_str(), r.stat.as_str()), ("77", "UNDELIV"));
        assert_eq!(r.status(), Some(MessageStatus::Undelivered));
        assert_eq!(r.error(), "UNDELIV:001");

        // "submit date:" must not be read as the id.
        let r = parse_receipt_text("sub:001 submit date:2611271200 id:5 stat:REJECTD").unwrap();
        assert_eq!(r.id, "5");
        assert_eq!(r.status(), Some(MessageStatus::Failed));
        assert!(parse_receipt_text("hello there").is_none());
    }

    #[test]
    fn interim_states_change_nothing() {
        for stat in ["ACCEPTD", "ENROUTE"] {
            let r = Receipt {
                id: "1".into(),
                from_tlv: false,
                stat: stat.into(),
                err: None,
            };
            assert_eq!(r.status(), None);
        }
        for (stat, status) in [
            ("EXPIRED", MessageStatus::Expired),
            ("UNKNOWN", MessageStatus::Failed),
        ] {
            let r = Receipt {
                id: "1".into(),
                from_tlv: false,
                stat: stat.into(),
                err: None,
            };
            assert_eq!(r.status(), Some(status));
        }
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(CommandStatus::from(0x58)), "ESME_RTHROTTLED");
        assert_eq!(status_name(CommandStatus::from(0x0B)), "ESME_RINVDSTADR");
        assert_eq!(status_name(CommandStatus::from(0x400)), "SMPP_0x00000400");
    }
}
