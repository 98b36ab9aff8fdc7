-- wrk script of scenario (g): every request a POST of one checkout, as JSON.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user":7,"cart":"c-81","items":[{"sku":"tea-earl-grey","qty":2},{"sku":"mug-blue","qty":1}],"card":"tok_visa"}'
