package ratelimit

// SharedRedis returns the package's test redis-server, or nil.
func SharedRedis() *RedisProcess { return testRedis }
