-- Bounces (issues 6, 10): a bounce mail's article names the answer it returned
-- (DeliveryBounced); the answer itself gets delivery = 'bounced'.
alter table articles add column if not exists bounce_of text;
