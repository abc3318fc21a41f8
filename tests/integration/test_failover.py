"""Leader failover on a real three-broker cluster (replication factor 3,
min.insync.replicas=2): partition leaders are SIGKILLed under a workload and
restarted, then two brokers go down so that acks=all cannot be met.  The
connector must stall without confirming, keep its replication connection
alive, resume by itself, lose nothing and keep per-key order."""
import collections
import time

from harness import IntegrationTest, Workload, check_delivery, main, wait_until

EVENTS = 30000
TOPIC = "outbox.event.failover"


class LeaderFailoverTest(IntegrationTest):

    kafka_options = {"brokers": 3}

    def busiest_leader(self):
        leaders = collections.Counter(self.kafka.leaders(TOPIC).values())
        return leaders.most_common(1)[0][0]

    def test_leaders_killed_and_acks_all_unmet(self):
        self.kafka.create_topic(TOPIC, 6)
        d = self.outboxd(slot_name="failover", kafka_message_timeout_ms="600000",
                         log_level="info")
        d.wait_streaming()
        # still writing when acks=all becomes unmet (30 to 50 s in: broker
        # starts and the ISR shrink vary), on a fast machine too; once
        # that is checked, the rest goes in at full speed
        workload = Workload(self.pg, "failover", events=EVENTS, per_txn=25, keys=50,
                            seconds=90).start()

        # three leader kills, each restarted after a few seconds
        kills = []
        for _ in range(3):
            time.sleep(2)
            victim = self.busiest_leader()
            kills.append(victim)
            self.kafka.kill(victim)
            time.sleep(3)
            self.kafka.start(victim)
        print("killed leaders: %s" % kills)

        # two brokers down: the controller shrinks the ISR to one replica,
        # below min.insync.replicas, so every produce gets NOT_ENOUGH_REPLICAS
        time.sleep(2)
        down = [b.id for b in self.kafka.brokers][:2]
        for b in down:
            self.kafka.kill(b)
        try:
            # fenced after broker.session.timeout.ms (4 s): the ISR shrinks
            # to the survivor, below min.insync.replicas=2
            wait_until(lambda: all(len(isr) == 1 for _, isr in
                                   self.kafka.partitions(TOPIC).values()),
                       30, "the ISR of every partition to shrink to one replica")
            samples = []
            for _ in range(6):
                samples.append(self.pg.confirmed_lsn("failover"))
                time.sleep(1)
            self.assertEqual(len(set(samples)), 1,
                             "confirmed LSN moved while acks=all was unmet: %s"
                             % [hex(s) for s in samples])
            self.assertLess(samples[-1], self.pg.current_lsn())
            self.assertIsNone(d.proc.poll(), d.output()[-3000:])
            self.assertNotEqual(self.pg.slot("failover")[1], "",
                                "the replication connection stays up while stalled")
        finally:
            for b in down:
                self.kafka.start(b)

        workload.hurry()
        workload.wait(600)
        end = self.pg.current_lsn()
        wait_until(lambda: self.pg.confirmed_lsn("failover") >= end, 300, "final confirmation")
        records = self.consumer.read([TOPIC], EVENTS, timeout=180)
        duplicates = check_delivery(self, self.envelopes, records, "failover", EVENTS)
        print("failover: %d events, %d leader kills, 2 brokers down once, %d records, "
              "%d duplicates, %d producers replaced after a fatal error" % (
                  EVENTS, len(kills), len(records), duplicates,
                  d.output().count("a new Kafka producer is ready")))
        self.assertIsNone(d.proc.poll(), "never exits:\n" + d.output()[-3000:])
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
