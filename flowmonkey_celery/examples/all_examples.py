"""Every example's handlers in one module, to deploy all the examples at once:

    FLOWMONKEY_HANDLERS=flowmonkey_celery.examples.all_examples
    FLOWMONKEY_FLOWS=<site-packages>/flowmonkey_celery/examples/flows

(a worker registers every module-level handler of the modules FLOWMONKEY_HANDLERS names).
Name this module or the examples' own modules, not both: a step type is registered once.
"""

from __future__ import annotations

from flowmonkey_celery.examples.approval import check_expense, notify_employee, pay_expense
from flowmonkey_celery.examples.daily_report import (
    collect_sales_figures,
    deliver_report,
    render_report,
)
from flowmonkey_celery.examples.fanout import resize_photo, store_thumbnail, summarise_batch
from flowmonkey_celery.examples.leads import assign_lead, score_lead
from flowmonkey_celery.examples.orders import (
    charge_card,
    delay,
    send_email,
    validate_order,
    wait_for_approval,
)

__all__ = [
    "assign_lead",
    "charge_card",
    "check_expense",
    "collect_sales_figures",
    "delay",
    "deliver_report",
    "notify_employee",
    "pay_expense",
    "render_report",
    "resize_photo",
    "score_lead",
    "send_email",
    "store_thumbnail",
    "summarise_batch",
    "validate_order",
    "wait_for_approval",
]
