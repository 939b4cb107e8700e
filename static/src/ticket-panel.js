// The symbol view (title, quote, chart) and the order ticket (market, limit, stop, stop limit; the API's
// refusals shown by their field), with the account refresh after an order.

import { formatMoney, formatPercent, formatPrice, formatSigned, signClass } from "./format.js";
import { fieldErrors, orderBody, timesInForce, validateOrder, visibleFields } from "./order-form.js";

export function startTicketPanel(page, { resubscribe, account }) {
  const { $, quotes, store, chart } = page;
  const ticket = startOrderTicket(page, { account });
  function showQuote(symbol) {
    const q = quotes.get(symbol);
    $("symbol-quote").innerHTML = q
      ? `<strong>${formatPrice(q.price)}</strong> <span class="${signClass(q.change)}">${formatSigned(q.change)} (${formatPercent(q.change_percent)})</span>`
      : "";
    ticket.updatePreview();
  }

  store.subscribe("selected", (symbol) => {
    const q = quotes.get(symbol);
    $("symbol-title").textContent = q ? `${symbol} · ${q.name}` : symbol;
    $("place-order").disabled = !q || q.active === false;
    $("ticket-message").textContent = q?.active === false ? `${symbol} is halted and cannot be traded.` : "";
    showQuote(symbol);
    chart.open(symbol);
    resubscribe();
  });

  $("chart-older").addEventListener("click", () => chart.loadOlder());

  // A batch of quote changes: the open symbol's chart and quote follow it.
  function onChanges(changes) {
    const selected = store.get("selected");
    if (changes.has(selected)) {
      chart.push(quotes.get(selected));
      showQuote(selected);
    }
  }

  return { onChanges };
}

// The order ticket: the fields of the chosen type, checks before sending, the API's refusals by field, and
// one refresh of the account after an order (later changes arrive as account events).
function startOrderTicket({ $, quotes, store, say, api }, { account }) {
  const ticket = $("ticket");
  const values = () => ticketValues(ticket, store.get("selected"));

  const updatePreview = () => showPreview($, quotes, values());

  // The fields an order type needs, and nothing else.
  function showFields() {
    for (const [field, shown] of Object.entries(visibleFields(values().type))) {
      const row = ticket.querySelector(`[data-field-row=${field}]`);
      if (row) row.hidden = !shown;
    }
    const allowed = timesInForce(values().type);
    const choice = ticket.elements.time_in_force;
    for (const option of choice?.options ?? []) option.disabled = !allowed.includes(option.value);
    if (choice && !allowed.includes(choice.value)) choice.value = "day";
    updatePreview();
  }

  const showErrors = (errors) => showFieldErrors(ticket, errors);

  ticket.addEventListener("input", updatePreview);
  ticket.elements.type?.addEventListener("change", showFields);
  ticket.addEventListener("submit", async (event) => {
    event.preventDefault();
    const order = values();
    const message = $("ticket-message");
    message.className = "ticket-message";
    message.textContent = "";
    if (!order.symbol) return;
    const errors = validateOrder(order);
    showErrors(errors);
    if (Object.keys(errors).length) {
      message.textContent = Object.values(errors)[0];
      message.classList.add("error");
      return;
    }
    await submit(order, message);
  });

  async function submit(order, message) {
    const button = $("place-order");
    button.disabled = true;
    message.textContent = "Placing order…";
    try {
      const result = await api.post("/api/v1/orders", orderBody(order, crypto.randomUUID()));
      message.textContent = placedMessage(order, result);
      message.classList.add("ok");
      refreshAccount(result).catch((error) => say(`Could not refresh the portfolio: ${error.message}`));
    } catch (error) {
      const errors = error.status === 422 ? fieldErrors(error.body, error.message) : {};
      showErrors(errors);
      message.textContent = errors.form ?? Object.values(errors)[0] ?? error.message;
      message.classList.add("error");
    } finally {
      button.disabled = false;
    }
  }

  // After an order: the new cash and holdings, the trades and the open orders. No polling: the invoice's
  // readiness (and later fills) arrive as account events on the feed socket.
  function refreshAccount(result) {
    return account.refresh({ openOrders: result?.status !== "filled" });
  }

  showFields();
  return { updatePreview };
}

// The order's cost or proceeds at its limit price, else at the latest quote.
function showPreview($, quotes, { symbol, side, type, quantity, limit_price }) {
  const shares = Number(quantity);
  const price = visibleFields(type).limit_price && Number(limit_price) > 0 ? Number(limit_price) : quotes.get(symbol)?.price;
  $("preview-side").textContent = side === "buy" ? "cost" : "proceeds";
  $("preview").textContent = price && Number.isInteger(shares) && shares > 0 ? formatMoney(price * shares) : "—";
}

function placedMessage(order, result) {
  const price = result?.price ?? result?.trade?.price;
  if (result?.status === "cancelled") {
    const tif = String(result.time_in_force ?? order.time_in_force).toUpperCase();
    return `Not filled: ${order.side} ${order.quantity} ${order.symbol} could not fill at once (${tif}), so it was cancelled.`;
  }
  if (order.type === "market" || result?.status === "filled") {
    const verb = order.side === "buy" ? "Bought" : "Sold";
    return `${verb} ${order.quantity} ${order.symbol}${price ? ` at ${formatPrice(price)}` : ""}.`;
  }
  return `${order.side === "buy" ? "Buy" : "Sell"} ${order.quantity} ${order.symbol} placed (${order.type.replace("_", " ")}).`;
}

// What the ticket holds (fields a type hides keep their values but are not sent).
function ticketValues(ticket, symbol) {
  const field = (name) => ticket.elements[name]?.value;
  return {
    symbol,
    side: field("side"),
    type: field("type") ?? "market",
    quantity: field("quantity"),
    limit_price: field("limit_price"),
    stop_price: field("stop_price"),
    time_in_force: field("time_in_force") ?? "day",
  };
}

// Each field's message under it (none: cleared).
function showFieldErrors(ticket, errors) {
  for (const element of ticket.querySelectorAll("[data-error-for]")) {
    element.textContent = errors[element.dataset.errorFor] ?? "";
  }
}
