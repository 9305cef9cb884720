-- Undo 0003.
DROP TABLE portfolio.transactions;
DROP TABLE portfolio.portfolios;
DROP TABLE portfolio.users;
DROP FUNCTION ops.enable_portfolio_rls(regclass, name);
DROP FUNCTION portfolio.visible_portfolio_ids();
