/**
 * The sample database the embedded PostgreSQL (PGlite) starts with, so that a quick start has
 * something to query: a small shop with customers, products and orders. It is a TypeScript string,
 * not a .sql file, so it travels with the source and needs no path lookup at run time.
 *
 * Loaded once, into a database that has no tables of its own, as one transaction.
 */
export const SAMPLE_DATA_SQL = `
CREATE TABLE customers (
  id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name       text NOT NULL,
  email      text NOT NULL UNIQUE,
  country    text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE customers IS 'People who have an account with the shop';

CREATE TABLE products (
  id       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku      text NOT NULL UNIQUE,
  name     text NOT NULL,
  category text NOT NULL,
  price    numeric(10, 2) NOT NULL CHECK (price >= 0),
  stock    integer NOT NULL DEFAULT 0 CHECK (stock >= 0)
);
COMMENT ON TABLE products IS 'What the shop sells; price in EUR';

CREATE TABLE orders (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (id),
  status      text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
  ordered_at  timestamptz NOT NULL
);
COMMENT ON TABLE orders IS 'One row per checkout';
CREATE INDEX orders_customer_id_idx ON orders (customer_id);

CREATE TABLE order_items (
  order_id   integer NOT NULL REFERENCES orders (id),
  product_id integer NOT NULL REFERENCES products (id),
  quantity   integer NOT NULL CHECK (quantity > 0),
  unit_price numeric(10, 2) NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
COMMENT ON TABLE order_items IS 'The products of each order, at the price paid';

CREATE VIEW order_totals AS
  SELECT o.id AS order_id, c.name AS customer, o.status, o.ordered_at,
         sum(i.quantity * i.unit_price) AS total
  FROM orders o
  JOIN customers c ON c.id = o.customer_id
  JOIN order_items i ON i.order_id = o.id
  GROUP BY o.id, c.name, o.status, o.ordered_at;
COMMENT ON VIEW order_totals IS 'Each order with its customer and total amount';

INSERT INTO customers (name, email, country, created_at) VALUES
  ('Ada Lovelace',    'ada@example.com',    'GB', '2024-01-15 09:30:00+00'),
  ('Grace Hopper',    'grace@example.com',  'US', '2024-02-03 14:10:00+00'),
  ('Alan Turing',     'alan@example.com',   'GB', '2024-03-22 11:45:00+00'),
  ('Katherine Johnson','katherine@example.com','US', '2024-04-08 16:20:00+00'),
  ('Edsger Dijkstra', 'edsger@example.com', 'NL', '2024-05-30 08:05:00+00');

INSERT INTO products (sku, name, category, price, stock) VALUES
  ('KB-001', 'Mechanical keyboard', 'peripherals', 89.00, 42),
  ('MS-002', 'Wireless mouse',      'peripherals', 29.50, 120),
  ('MN-003', '27-inch monitor',     'displays',   249.99, 15),
  ('HD-004', 'Noise-cancelling headphones', 'audio', 179.00, 30),
  ('CB-005', 'USB-C cable (2 m)',   'accessories',  9.90, 500),
  ('DK-006', 'Laptop stand',        'accessories', 39.00, 0);

INSERT INTO orders (customer_id, status, ordered_at) VALUES
  (1, 'shipped',   '2024-06-01 10:00:00+00'),
  (2, 'paid',      '2024-06-03 12:30:00+00'),
  (1, 'pending',   '2024-06-10 09:15:00+00'),
  (3, 'cancelled', '2024-06-11 17:45:00+00'),
  (4, 'shipped',   '2024-06-12 08:00:00+00'),
  (5, 'paid',      '2024-06-15 19:20:00+00');

INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES
  (1, 1, 1, 89.00), (1, 5, 2, 9.90),
  (2, 3, 2, 249.99),
  (3, 2, 1, 29.50), (3, 6, 1, 39.00),
  (4, 4, 1, 179.00),
  (5, 1, 1, 89.00), (5, 2, 1, 29.50), (5, 5, 3, 9.90),
  (6, 4, 1, 179.00);
`;
