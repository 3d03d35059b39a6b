//! `POST /zoom/event`: Zoom webhooks (see api.md section 5).
