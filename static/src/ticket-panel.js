// The symbol view (title, quote, chart) and the order ticket, with the account refresh after an order.

import { formatMoney, formatPercent, formatPrice, formatSigned, signClass } from "./format.js";

export function startTicketPanel(page, { resubscribe }) {
  const { $, quotes, store, chart } = page;
  const ticket = $("ticket");
  const updatePreview = () => showPreview(page, ticket);
  function showQuote(symbol) {
    const q = quotes.get(symbol);
    $("symbol-quote").innerHTML = q
      ? `<strong>${formatPrice(q.price)}</strong> <span class="${signClass(q.change)}">${formatSigned(q.change)} (${formatPercent(q.change_percent)})</span>`
      : "";
    updatePreview();
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
  ticket.addEventListener("input", updatePreview);
  ticket.addEventListener("submit", (event) => placeOrder(page, ticket, event));

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

function showPreview({ $, quotes, store }, ticket) {
  const q = quotes.get(store.get("selected"));
  const quantity = Number($("quantity").value);
  const side = ticket.elements.side.value;
  $("preview-side").textContent = side === "buy" ? "cost" : "proceeds";
  $("preview").textContent = q && Number.isInteger(quantity) && quantity > 0 ? formatMoney(q.price * quantity) : "—";
}

// The ticket's submit: check the quantity, place the order, say how it went, refresh the account.
async function placeOrder(page, ticket, event) {
  const { $, store, say, api } = page;
  event.preventDefault();
  const symbol = store.get("selected");
  const quantity = Number($("quantity").value);
  const message = $("ticket-message");
  message.className = "ticket-message";
  if (!symbol) return;
  if (!Number.isInteger(quantity) || quantity < 1) {
    message.textContent = "Quantity: enter a whole number of shares, at least 1.";
    message.classList.add("error");
    return;
  }
  const button = $("place-order");
  button.disabled = true;
  message.textContent = "Placing order…";
  try {
    const order = { symbol, side: ticket.elements.side.value, quantity, client_order_id: crypto.randomUUID() };
    const result = await api.post("/api/v1/orders", order);
    const price = result?.price ?? result?.trade?.price;
    message.textContent = `${order.side === "buy" ? "Bought" : "Sold"} ${quantity} ${symbol}${price ? ` at ${formatPrice(price)}` : ""}.`;
    message.classList.add("ok");
    refreshAccount(page).catch((error) => say(`Could not refresh the portfolio: ${error.message}`));
  } catch (error) {
    message.textContent = error.message;
    message.classList.add("error");
  } finally {
    button.disabled = false;
  }
}

// After an order: the new cash and holdings, then the trades until their invoices are generated.
async function refreshAccount({ api, store }) {
  const [portfolio, orders] = await Promise.all([api.get("/api/v1/portfolio"), api.get("/api/v1/dashboard/orders")]);
  store.set("portfolio", portfolio);
  store.set("orders", orders);
  for (let poll = 0; poll < 10 && store.get("orders").some((o) => o.invoice_status === "pending"); poll++) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    store.set("orders", await api.get("/api/v1/dashboard/orders"));
  }
}
