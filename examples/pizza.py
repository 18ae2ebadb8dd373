"""A pizza order, start to finish: every builder feature, each one really doing its job.

Run it with ``python examples/pizza.py`` (needs wfe-core and wfe-host installed). It prints what
happened, step by step, and exits 0 when the order went as the story says:

* the card charge fails once and is retried (``on_error(retry)``), its receipt mapped into the
  order (``input`` / ``output``);
* dough and sauce are made at the same time (``parallel``), toppings go on one by one
  (sequential ``for_each``) and the sides are packed all at once (parallel ``for_each``);
* the oven heats in a loop until hot (``while_do``), large pizzas get extra cheese
  (``if_do``), the kitchen waits for the customer's confirmation event (``wait_for`` with a
  timeout) and bakes (``delay``);
* delivery is a saga: the driver and the route are booked, the car breaks down, and the
  bookings are undone in reverse order (``saga`` / ``compensate_with``); the order then
  ``decide``s how the customer gets the pizza;
* right after the charge, a survey is scheduled to go out in the background (``schedule``)
  and reminders recur until three were sent (``recur``), while the kitchen works on;
* the invoice is a child workflow with typed data (``sub_workflow``), and ``end_workflow``
  stops before a step that must never run (it would also cancel any background work still
  pending, so the background steps above are due long before it).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import attrs

from wfe_host import (
    ErrorBehavior,
    ExecutionResult,
    StepBody,
    StepContext,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowInstance,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from collections.abc import Callable


@attrs.define
class Order:
    """The workflow data: an attrs class, restored to this type after every reload."""

    order_id: str = "pizza-42"
    size: str = "large"
    toppings: list[str] = attrs.Factory(lambda: ["tomato", "mozzarella", "basil"])
    sides: list[str] = attrs.Factory(lambda: ["cola", "salad"])
    total: int = 18
    receipt: str | None = None
    oven_temp: int = 20
    confirmed_by: str | None = None
    delivery: str = "delivery"
    reminders: int = 0
    invoice_number: str | None = None
    log: list[str] = attrs.Factory(list)


@attrs.define
class Invoice:
    """The child workflow's data (typed inputs and outputs)."""

    order_id: str = ""
    amount: int = 0
    number: str | None = None


def say(line: str) -> Callable[[StepContext], None]:
    """An inline step that records ``line`` in the order's log."""

    def step(ctx: StepContext) -> None:
        ctx.data.log.append(line)

    step.__name__ = line
    return step


class ValidateOrder(StepBody):
    async def run(self, ctx: StepContext) -> ExecutionResult:
        if not ctx.data.toppings:
            raise ValueError("a pizza needs toppings")
        ctx.data.log.append(f"validated {ctx.data.order_id}")
        return ExecutionResult.next()


class ChargeCard(StepBody):
    """Fails on its first attempt (a flaky payment gateway); the retry succeeds."""

    amount: int = 0

    async def run(self, ctx: StepContext) -> ExecutionResult:
        if ctx.attempt == 1:
            ctx.data.log.append("card declined (gateway timeout)")
            raise ConnectionError("payment gateway timed out")
        self.receipt = f"receipt for {self.amount} EUR, key {ctx.idempotency_key[-8:]}"
        ctx.data.log.append(f"charged {self.amount} EUR on attempt {ctx.attempt}")
        return ExecutionResult.next()


async def make_dough(ctx: StepContext) -> None:
    await anyio.sleep(0.2)  # kneading: async, so the sauce is made meanwhile
    ctx.data.log.append("dough ready")


async def make_sauce(ctx: StepContext) -> None:
    await anyio.sleep(0.2)
    ctx.data.log.append("sauce ready")


def add_topping(ctx: StepContext) -> None:
    ctx.data.log.append(f"added {ctx.item}")


async def pack_side(ctx: StepContext) -> None:
    await anyio.sleep(0.05)
    ctx.data.log.append(f"packed {ctx.item}")


def heat_oven(ctx: StepContext) -> None:
    ctx.data.oven_temp += 80
    ctx.data.log.append(f"oven at {ctx.data.oven_temp}")


class DeliverByCar(StepBody):
    async def run(self, ctx: StepContext) -> ExecutionResult:
        ctx.data.log.append("car broke down")
        raise RuntimeError("flat tyre")


def switch_to_pickup(ctx: StepContext) -> None:
    ctx.data.delivery = "pickup"
    ctx.data.log.append("customer will pick up")


def remind(ctx: StepContext) -> None:
    ctx.data.reminders += 1
    ctx.data.log.append(f"reminder {ctx.data.reminders}")


def write_invoice(ctx: StepContext) -> None:
    ctx.data.number = f"INV-{ctx.data.order_id}-{ctx.data.amount}"


invoice_workflow = (
    WorkflowBuilder(Invoice)
    .start_with(write_invoice)
    .name("WriteInvoice")
    .build("pizza-invoice", version=1)
)

pizza_workflow = (
    WorkflowBuilder(Order)
    .start_with(ValidateOrder)
    .name("Validate")
    .id("validate")
    .then(ChargeCard)
    .name("Charge")
    .input(amount=lambda data: data.total)
    .output(receipt=lambda step: step.receipt)
    .on_error(ErrorBehavior.retry(interval=timedelta(milliseconds=100), max_retries=3))
    .schedule(lambda data: timedelta(milliseconds=200), lambda b: b.start_with(say("survey sent")))
    .recur(
        lambda data: timedelta(milliseconds=50),
        until=lambda data: data.reminders >= 3,
        body=lambda b: b.start_with(remind),
    )
    .parallel(
        lambda p: p.branch(lambda b: b.start_with(make_dough)).branch(
            lambda b: b.start_with(make_sauce)
        )
    )
    .for_each(lambda data: data.toppings, lambda b: b.start_with(add_topping), parallel=False)
    .for_each(lambda data: data.sides, lambda b: b.start_with(pack_side), parallel=True)
    .while_do(lambda data: data.oven_temp < 250, lambda b: b.start_with(heat_oven))
    .if_do(lambda data: data.size == "large", lambda b: b.start_with(say("extra cheese")))
    .then_fn(say("waiting for the customer"))
    .wait_for(
        "customer-confirmed",
        key=lambda data: data.order_id,
        effective_date=None,  # also an event published before the kitchen got here
        timeout=timedelta(seconds=10),
    )
    .output(confirmed_by=lambda step: step.event_data)
    .delay(lambda data: timedelta(milliseconds=300))
    .name("Bake")
    .then_fn(say("baked"))
    .saga(
        lambda b: (
            b.start_with(say("driver booked"))
            .compensate_with(say("driver released"))
            .then(say("route planned"))
            .compensate_with(say("route cancelled"))
            .then(DeliverByCar)
            .then(say("delivered"))
        )  # never: the saga compensates instead
    )
    .decide(
        lambda data: data.delivery,
        {
            "delivery": lambda b: b.start_with(switch_to_pickup),
            "pickup": lambda b: b.start_with(say("already pickup")),
        },
    )
    .sub_workflow(
        "pizza-invoice",
        version=1,
        inputs=lambda data: Invoice(order_id=data.order_id, amount=data.total),
        outputs={"invoice_number": "number"},
    )
    .then_fn(say("order closed"))
    .end_workflow()
    .then_fn(say("this never runs"))
    .build("pizza-order", version=1, description="A pizza from order to invoice")
)


async def main(verbose: bool = True) -> WorkflowInstance:
    """Run the order on an in-memory host and return the finished instance."""
    async with WorkflowHost() as host:
        host.register(invoice_workflow)
        host.register(pizza_workflow)
        order = Order()
        workflow_id = await host.start_workflow("pizza-order", order, reference=order.order_id)
        # The customer confirms a moment later, from outside the workflow.
        await anyio.sleep(0.3)
        await host.publish_event("customer-confirmed", order.order_id, "Alice")
        finished = await host.wait_for_workflow(workflow_id, timeout=60)
    if verbose:
        data: Order = finished.data
        print(f"workflow {finished.definition_id}: {finished.status}")
        for line in data.log:
            print(f"  - {line}")
        print(f"receipt: {data.receipt}")
        print(f"confirmed by: {data.confirmed_by}; invoice: {data.invoice_number}")
    return finished


def check(instance: WorkflowInstance) -> list[str]:
    """What went differently from the story (empty when it all happened)."""
    data: Order = instance.data
    log = data.log
    problems = []
    expect = [
        instance.status == WorkflowStatus.COMPLETE,
        log.count("card declined (gateway timeout)") == 1,
        "charged 18 EUR on attempt 2" in log,
        data.receipt is not None,
        {"dough ready", "sauce ready"} <= set(log),
        [x for x in log if x.startswith("added ")] == [f"added {t}" for t in data.toppings],
        {"packed cola", "packed salad"} <= set(log),
        data.oven_temp >= 250,
        "extra cheese" in log,
        data.confirmed_by == "Alice",
        "baked" in log,
        log.index("route cancelled") < log.index("driver released"),
        "delivered" not in log,
        data.delivery == "pickup",
        "survey sent" in log,
        data.reminders == 3,
        data.invoice_number == "INV-pizza-42-18",
        "order closed" in log,
        "this never runs" not in log,
    ]
    for index, ok in enumerate(expect):
        if not ok:
            problems.append(f"expectation {index} failed")
    return problems


if __name__ == "__main__":
    result = anyio.run(main)
    failures = check(result)
    for failure in failures:
        print(f"unexpected: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)
