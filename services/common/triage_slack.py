"""The triage notice's Slack buttons, shared by the router (which posts them, router/render.py) and the console
(which answers them, console/slack_actions.py): Block Kit `button` elements whose `action_id` names the
decision and whose `value` is the router's group key (what a TriageDecision is keyed by)."""

from __future__ import annotations

PAGE_NOW = "triage_page_now"   # action_id of the "Page now" button
DISMISS = "triage_dismiss"     # action_id of the "Dismiss" button
# action_id -> the Triage page's `decision` field (console/actions.py TRIAGE_DECISIONS)
DECISIONS = {PAGE_NOW: "page_now", DISMISS: "dismiss"}
BUTTON_VALUE_MAX = 2000        # Slack's limit on a button's `value`
HOLD_BLOCK = "triage_hold"        # block_id of the notice's "Not paged yet" section
ACTIONS_BLOCK = "triage_actions"  # block_id of its buttons; once decided, both give way to who decided
