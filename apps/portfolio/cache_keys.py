"""The "profiles" cache keys of a trader (read-your-writes: never in an in-process layer). The engine drops
the account and order list after each batch that changes them; the trader id never changes."""


def account_key(user_id: object) -> str:
    """A trader's account (cash, holdings): dropped after every batch that changes it."""
    return f"account:{user_id}"


def trader_key(user_id: object) -> str:
    """The user's trader id, which never changes: orders leave it alone."""
    return f"trader:{user_id}"


def recent_orders_key(user_id: object) -> str:
    """A trader's newest orders: dropped after every batch that changes one."""
    return f"orders:{user_id}"
